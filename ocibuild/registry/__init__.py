"""The distribution-spec registry client and the ``copy``/``inspect``/``login`` verbs.

    client.py       RegistryClient: manifests, images, the authenticated request
    transport.py    HTTP: scheme/TLS per host, timeouts, retries, registry error bodies
    auth.py         WWW-Authenticate challenges, basic auth, bearer tokens per scope set
    credentials.py  docker config.json / containers auth.json / credential helpers; login
    download.py     resumable, verifying blob downloads into a store
    blobs.py        blob uploads: HEAD, mount, monolithic and chunked, restarts
    transports.py   copy sources: docker://, oci:, oci-archive:, docker-archive:
    convert.py      --format and --dest-compress-format rewrites
    copying.py      copy destinations: streaming registry-to-registry, layout files
    spool.py        the temporary blob directory of a copy
    cli.py          run_copy / run_inspect / run_login

Nothing here imports ``ocibuild.store`` at module level: stores are passed in (see
``client.BlobStore``).
"""
