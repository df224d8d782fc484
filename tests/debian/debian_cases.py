"""The Dockerfiles of the Debian build tests (shared by test_debian_builds and the
BuildKit differential test). ``localhost:5000`` stands for the test registry."""

BASE = "FROM localhost:5000/library/debian:bookworm\n"

APT = BASE + """\
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update @OPTS@ \\
 && apt-get install -y --no-install-recommends @OPTS@ libcap2-bin \\
 && apt-get install -y --no-install-recommends --reinstall @OPTS@ passwd \\
 && rm -rf /var/lib/apt/lists/* /usr/share/doc/bash
RUN cp /bin/true /usr/local/bin/netcap \\
 && setcap cap_net_raw,cap_net_bind_service+ep /usr/local/bin/netcap \\
 && ln /usr/local/bin/netcap /usr/local/bin/netcap-link \\
 && ln /usr/bin/passwd /usr/local/sbin/passwd-link
"""

USERS = BASE + """\
RUN groupadd --gid 1234 app \\
 && useradd --uid 1234 --gid app --create-home --shell /bin/bash app
COPY --chown=app:app app.conf /srv/app/
COPY --chown=app:app data/ /srv/app/data/
RUN ln /srv/app/app.conf /srv/app/app.conf.link && chmod 0640 /srv/app/app.conf
USER app
WORKDIR /home/app/work
RUN id -u > uid.txt && id -gn > group.txt && mkdir cache && touch cache/made-by-app
CMD ["bash", "-l"]
"""
USERS_FILES = {"app.conf": "port = 8080\n", "data/a.txt": "a\n", "data/sub/b.txt": "b\n"}


DPKG = """\
FROM localhost:5000/library/debian:bookworm AS pkg
RUN set -e; root=/build/hello; \\
    mkdir -p $root/DEBIAN $root/usr/local/bin $root/var/www/hello; \\
    printf 'Package: ocibuild-hello\\nVersion: 1.0\\nArchitecture: all\\n' > $root/DEBIAN/control; \\
    printf 'Maintainer: Test <test@example.org>\\nDescription: ocibuild test\\n' \\
      >> $root/DEBIAN/control; \\
    printf '#!/bin/sh\\necho hello from deb\\n' > $root/usr/local/bin/hello; \\
    chmod 0755 $root/usr/local/bin/hello; \\
    cp $root/usr/local/bin/hello $root/usr/local/bin/hello-suid; \\
    chmod 4755 $root/usr/local/bin/hello-suid; \\
    echo '<h1>hi</h1>' > $root/var/www/hello/index.html; \\
    chown -R www-data:www-data $root/var/www/hello; \\
    dpkg-deb --build $root /build/hello.deb

FROM localhost:5000/library/debian:bookworm
COPY --from=pkg /build/hello.deb /tmp/hello.deb
RUN dpkg -i /tmp/hello.deb && rm /tmp/hello.deb && hello > /hello.out
"""

# BuildKit's documented apt pattern: lists and downloaded .debs in cache mounts, never in a
# layer. @N@ makes each build's text differ.
APT_CACHE = BASE + """\
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \\
    --mount=type=cache,target=/var/lib/apt,sharing=locked \\
    echo build @N@ && apt-get update \\
 && apt-get install -y --no-install-recommends @PKG@
"""
