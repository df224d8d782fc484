"""The Dockerfiles of the realistic Debian builds (``test_debian_realistic.py``): what
application images on a Debian base do, written to be compared with BuildKit file for file.
``localhost:5000`` stands for the test registry. ``certs/`` in each context holds the CA
certificates this machine trusts (``/usr/local/share/ca-certificates``, possibly none): HTTPS to
PyPI and the npm registry may go through an intercepting proxy, and copying the same files into
both builders' images keeps them comparable."""

from __future__ import annotations

PY_VENV = r"""FROM localhost:5000/library/debian:bookworm AS build
ARG DEBIAN_FRONTEND=noninteractive
COPY certs/ /usr/local/share/ca-certificates/
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_CERT=/etc/ssl/certs/ca-certificates.crt
COPY requirements.txt /tmp/
RUN pip install --no-cache-dir -r /tmp/requirements.txt

FROM localhost:5000/library/debian:bookworm
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/*
RUN useradd -r -u 999 -d /app -s /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
COPY --chown=app:app app/ /app/
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
WORKDIR /app
USER app
RUN python -c "import requests, six; print(requests.__version__)" > version.txt
CMD ["python", "-m", "app"]
"""
PY_VENV_FILES = {
    'app/app/__init__.py': '',
    'app/app/__main__.py': 'print("hi")\n',
    'requirements.txt': 'requests==2.32.3\nsix==1.16.0\n',
}

NODE_NPM = r"""FROM localhost:5000/library/debian:bookworm
ARG DEBIAN_FRONTEND=noninteractive
COPY certs/ /usr/local/share/ca-certificates/
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
RUN groupadd -g 1000 node && useradd -m -u 1000 -g node -s /bin/bash node
USER node
WORKDIR /home/node/app
COPY --chown=node:node package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --chown=node:node index.js ./
CMD ["node", "index.js"]
"""
NODE_NPM_FILES = {
    'index.js': "const isNumber = require('is-number');\nconsole.log(isNumber(5));\n",
    'package-lock.json': '{\n  "name": "h4-app",\n  "version": "1.0.0",\n  "lockfileVersion": 3,\n  "requires": true,\n  "packages": {\n    "": {\n      "name": "h4-app",\n      "version": "1.0.0",\n      "dependencies": {\n        "is-number": "7.0.0",\n        "ms": "2.1.3",\n        "semver": "7.6.3"\n      },\n      "devDependencies": {\n        "left-pad": "1.3.0"\n      }\n    },\n    "node_modules/is-number": {\n      "version": "7.0.0",\n      "integrity": "sha512-41Cifkg6e8TylSpdtTpeLVMqvSBEVzTttHvERD741+pnZ8ANv0004MRL43QKPDlK9cGvNp6NZWZUBlbGXYxxng==",\n      "license": "MIT",\n      "engines": {\n        "node": ">=0.12.0"\n      }\n    },\n    "node_modules/left-pad": {\n      "version": "1.3.0",\n      "integrity": "sha512-XI5MPzVNApjAyhQzphX8BkmKsKUxD4LdyK24iZeQGinBN9yTQT3bFlCBy/aVx2HrNcqQGsdot8ghrjyrvMCoEA==",\n      "dev": true,\n      "license": "WTFPL"\n    },\n    "node_modules/ms": {\n      "version": "2.1.3",\n      "integrity": "sha512-6FlzubTLZG3J2a/NVCAleEhjzq5oxgHyaCU9yYXvcLsvoVaHJq/s5xXI6/XXP6tz7R9xAOtHnSO/tXtF3WRTlA==",\n      "license": "MIT"\n    },\n    "node_modules/semver": {\n      "version": "7.6.3",\n      "integrity": "sha512-oVekP1cKtI+CTDvHWYFUcMtsK/00wmAEfyqKfNdARm8u1wNVhSgaX7A8d4UuIlUI5e84iEwOhs7ZPYRmzU9U6A==",\n      "license": "ISC",\n      "bin": {\n        "semver": "bin/semver.js"\n      },\n      "engines": {\n        "node": ">=10"\n      }\n    }\n  }\n}\n',
    'package.json': '{"name": "h4-app", "version": "1.0.0", "private": true, "main": "index.js",\n "dependencies": {"is-number": "7.0.0", "ms": "2.1.3", "semver": "7.6.3"},\n "devDependencies": {"left-pad": "1.3.0"}}\n',
}

APT_LOCALE = r"""FROM localhost:5000/library/debian:bookworm
ARG DEBIAN_FRONTEND=noninteractive
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends locales tzdata curl ca-certificates procps less; \
    rm -rf /var/lib/apt/lists/*; \
    sed -i 's/^# *\(en_US.UTF-8\)/\1/; s/^# *\(de_DE.UTF-8\)/\1/' /etc/locale.gen; \
    locale-gen; \
    ln -sf /usr/share/zoneinfo/Europe/Berlin /etc/localtime; \
    echo Europe/Berlin > /etc/timezone
ENV LANG=en_US.UTF-8 LC_ALL=en_US.UTF-8 TZ=Europe/Berlin
RUN ln -sf /dev/stdout /var/log/app.log \
 && mkdir -p /etc/app/conf.d \
 && printf 'key=value\n' > /etc/app/app.conf \
 && chmod 0600 /etc/app/app.conf \
 && ln -sf ../app.conf /etc/app/conf.d/00-default.conf \
 && rm -f /etc/motd && touch /etc/motd
"""
APT_LOCALE_FILES: dict[str, str] = {}

USERS_CHOWN = r"""FROM localhost:5000/library/debian:bookworm
RUN groupadd -r -g 998 svc \
 && useradd -r -u 998 -g svc -G users,staff -d /srv/svc -m -s /bin/bash -c "Service user" svc \
 && useradd -u 2000 -U -m -k /etc/skel dev \
 && passwd -l dev
COPY --chown=998:998 data/ /srv/svc/data/
RUN mkdir -p /srv/svc/run /srv/svc/logs /var/lib/svc \
 && install -d -o svc -g svc -m 0750 /var/lib/svc/state \
 && chown -R svc:svc /srv/svc /var/lib/svc \
 && chmod -R g+rwX,o-rwx /srv/svc \
 && chmod 1777 /srv/svc/run \
 && chmod g+s /srv/svc/logs \
 && find /srv/svc -type f -name '*.sh' -exec chmod 0755 {} +
USER svc:svc
WORKDIR /srv/svc
RUN umask 027 && mkdir -p cache/x && echo hi > cache/x/file && ln -s cache/x/file latest && mkfifo run/pipe
USER root
RUN usermod -aG svc dev && chown dev: /srv/svc/logs
USER 998
"""
USERS_CHOWN_FILES = {
    'data/config.ini': 'x=1\n',
    'data/scripts/start.sh': 'echo start\n',
}

SETCAP = r"""FROM localhost:5000/library/debian:bookworm
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends libcap2-bin iputils-ping python3-minimal \
 && rm -rf /var/lib/apt/lists/*
RUN cp /usr/bin/python3.11 /usr/local/bin/py-bind \
 && setcap 'cap_net_bind_service=+ep' /usr/local/bin/py-bind \
 && cp /bin/sleep /usr/local/bin/sleep-caps \
 && setcap cap_sys_nice,cap_ipc_lock+eip /usr/local/bin/sleep-caps \
 && getcap /usr/bin/ping /usr/local/bin/py-bind /usr/local/bin/sleep-caps > /caps.txt \
 && chmod u+s /usr/local/bin/sleep-caps
RUN setcap -r /usr/bin/ping || true
"""
SETCAP_FILES: dict[str, str] = {}

C_MULTISTAGE = r"""FROM localhost:5000/library/debian:bookworm AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY src/ ./
RUN make PREFIX=/usr/local install \
 && strip /usr/local/bin/hello

FROM localhost:5000/library/debian:bookworm
COPY --from=build /usr/local/lib/ /usr/local/lib/
COPY --from=build /usr/local/bin/hello /usr/local/bin/
COPY --from=build /usr/local/include /usr/local/include
RUN ldconfig && hello > /hello.txt && ldconfig -p | grep -c libgreet > /ldcount.txt
ENTRYPOINT ["/usr/local/bin/hello"]
"""
C_MULTISTAGE_FILES = {
    'src/Makefile': 'PREFIX ?= /usr/local\nall: hello libgreet.so.1.0\nlibgreet.so.1.0: greet.c\n\tgcc -shared -fPIC -Wl,-soname,libgreet.so.1 -o $@ greet.c\nhello: hello.c libgreet.so.1.0\n\tln -sf libgreet.so.1.0 libgreet.so\n\tgcc -o hello hello.c -L. -lgreet\ninstall: all\n\tinstall -d $(PREFIX)/bin $(PREFIX)/lib $(PREFIX)/include\n\tinstall -m 0755 hello $(PREFIX)/bin/hello\n\tinstall -m 0644 libgreet.so.1.0 $(PREFIX)/lib/\n\tln -sf libgreet.so.1.0 $(PREFIX)/lib/libgreet.so.1\n\tln -sf libgreet.so.1 $(PREFIX)/lib/libgreet.so\n\tinstall -m 0644 greet.h $(PREFIX)/include/\n',
    'src/greet.c': '#include "greet.h"\n#include <stdio.h>\nvoid greet(void){puts("hello from lib");}\n',
    'src/greet.h': 'void greet(void);\n',
    'src/hello.c': '#include "greet.h"\nint main(void){greet();return 0;}\n',
}

DIVERT = r"""FROM localhost:5000/library/debian:bookworm
ARG DEBIAN_FRONTEND=noninteractive
RUN dpkg-divert --local --rename --add /sbin/initctl \
 && ln -sf /bin/true /sbin/initctl \
 && dpkg-divert --local --rename --divert /usr/bin/sensible-editor.real --add /usr/bin/sensible-editor \
 && printf '#!/bin/sh\nexec cat "$@"\n' > /usr/bin/sensible-editor && chmod 755 /usr/bin/sensible-editor
RUN echo 'path-exclude /usr/share/doc/*' > /etc/dpkg/dpkg.cfg.d/excludes \
 && echo 'path-exclude /usr/share/man/*' >> /etc/dpkg/dpkg.cfg.d/excludes \
 && apt-get update && apt-get install -y --no-install-recommends jq \
 && apt-get purge -y --auto-remove \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/dpkg.log /var/log/apt/*
RUN update-alternatives --install /usr/bin/editor editor /usr/bin/sensible-editor 100 \
 && rm -rf /usr/share/doc/libjq1 /usr/share/locale/* \
 && mkdir -p /usr/share/locale
"""
DIVERT_FILES: dict[str, str] = {}

CACHE_MOUNTS = r"""FROM localhost:5000/library/debian:bookworm
ARG DEBIAN_FRONTEND=noninteractive
COPY certs/ /usr/local/share/ca-certificates/
RUN rm -f /etc/apt/apt.conf.d/docker-clean \
 && echo 'Binary::apt::APT::Keep-Downloaded-Packages "true";' > /etc/apt/apt.conf.d/keep-cache
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt,sharing=locked \
    apt-get update && apt-get install -y --no-install-recommends python3-pip python3-venv ca-certificates
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -m venv /venv && /venv/bin/pip install attrs==23.2.0 packaging==24.0
RUN --mount=type=bind,source=req.txt,target=/tmp/req.txt \
    --mount=type=cache,target=/root/.cache/pip,id=pip2 \
    --mount=type=tmpfs,target=/var/tmp \
    /venv/bin/pip install -r /tmp/req.txt && touch /var/tmp/x
"""
CACHE_MOUNTS_FILES = {
    'req.txt': 'idna==3.7\n',
}

PIP_USER = r"""FROM localhost:5000/library/debian:bookworm
ARG DEBIAN_FRONTEND=noninteractive
COPY certs/ /usr/local/share/ca-certificates/
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-pip ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir --break-system-packages click==8.1.7 \
 && useradd -m -u 1001 worker
USER worker
ENV PATH=/home/worker/.local/bin:$PATH
RUN pip install --user --break-system-packages --no-warn-script-location wheel==0.43.0 tomli==2.0.1 \
 && python3 -m compileall -q /home/worker/.local
WORKDIR /home/worker
RUN printf 'import click\n' > app.py && chmod 600 app.py
"""
PIP_USER_FILES: dict[str, str] = {}

EDGE = r"""FROM localhost:5000/library/debian:bookworm
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends acl attr python3-minimal \
 && rm -rf /var/lib/apt/lists/*
RUN useradd -u 70000 -m big && useradd -u 1500 -m small \
 && mkdir -p /data/shared /data/private \
 && setfacl -m u:small:rwx,d:u:small:rx /data/shared \
 && setfattr -n user.origin -v h4 /data/private \
 && echo x > /data/private/f && setfattr -n user.comment -v "hello world" /data/private/f \
 && chown -h small:small /data && ln -s /data/private/f /data/link && chown -h 1500:1500 /data/link
RUN python3 -c "import socket; s=socket.socket(socket.AF_UNIX); s.bind('/data/app.sock')" \
 && mkfifo -m 0620 /data/fifo \
 && mknod -m 0600 /data/null c 1 3 \
 && touch "/data/caf$(printf '\303\251')" "/data/raw$(printf '\377\376')" \
 && mkdir -p "/data/$(printf 'd%.0s' $(seq 1 120))/$(printf 'e%.0s' $(seq 1 120))" \
 && ln -s "/data/$(printf 'x%.0s' $(seq 1 150))" /data/longlink \
 && echo a > /data/h1 && ln /data/h1 /data/h2 && ln /data/h1 /data/private/h3 \
 && chmod 0000 /data/private/f && chmod 0700 /data/private && chown 70000:1500 /data/private
RUN rm -rf /usr/share/doc && mkdir /usr/share/doc && echo new > /usr/share/doc/README \
 && rm -rf /etc/cron.daily /var/lib/apt/extended_states \
 && chmod 0700 /root && chmod u-s /usr/bin/newgrp && chmod 4755 /usr/bin/getent \
 && touch /etc/hostname
RUN if (echo "10.9.8.7 h4" >> /etc/hosts) 2>/dev/null; then echo "/etc/hosts writable"; exit 1; fi \
 && if (echo "nameserver 10.9.8.7" > /etc/resolv.conf) 2>/dev/null; then exit 1; fi
"""
EDGE_FILES: dict[str, str] = {}

NGINX = r"""FROM localhost:5000/library/debian:bookworm
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx-light curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && ln -sf /dev/stdout /var/log/nginx/access.log \
 && ln -sf /dev/stderr /var/log/nginx/error.log
COPY --chmod=0644 --link site.conf /etc/nginx/sites-available/default
COPY --chown=www-data:www-data --chmod=755 html/ /var/www/html/
RUN <<EOS
set -e
mkdir -p /var/cache/nginx/client_temp
chown -R www-data:www-data /var/cache/nginx /var/lib/nginx /var/log/nginx
chmod -R g+w /var/cache/nginx
EOS
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN --mount=type=secret,id=token,target=/run/secrets/token,required=false \
    (cat /run/secrets/token 2>/dev/null || true) | wc -c > /token-len
RUN --mount=type=cache,target=/var/cache/app,uid=33,gid=33,mode=0750 \
    touch /var/cache/app/x && stat -c '%a %u:%g' /var/cache/app > /cache-stat
COPY <<EOS /etc/nginx/conf.d/extra.conf
server_tokens off;
EOS
EXPOSE 80/tcp 443
VOLUME ["/var/cache/nginx"]
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=30s --timeout=3s CMD curl -fsS http://localhost/ || exit 1
LABEL org.opencontainers.image.title="web" maintainer="ops@example.org"
USER www-data
ENTRYPOINT ["nginx", "-g", "daemon off;"]
"""
NGINX_FILES = {
    'html/css/site.css': 'h1{}\n',
    'html/index.html': '<h1>hi</h1>\n',
    'site.conf': 'server {\n  listen 80 default_server;\n  root /var/www/html;\n}\n',
}

STAGE_MOUNTS = r"""FROM localhost:5000/library/debian:bookworm AS build
RUN mkdir -p /out/bin /out/share/app /out/lib \
 && printf '#!/bin/sh\necho app\n' > /out/bin/app && chmod 0750 /out/bin/app \
 && ln /out/bin/app /out/bin/app-hard && ln -s app /out/bin/app-link \
 && echo data > /out/share/app/data.txt && chown -R 1000:1000 /out/share \
 && mkdir -p /out/empty && chmod 2775 /out/empty

FROM localhost:5000/library/debian:bookworm
RUN useradd -m -u 1000 app
RUN --mount=type=bind,from=build,source=/out,target=/mnt/out \
    mkdir -p /opt/app && cp -a /mnt/out/. /opt/app/ \
 && stat -c '%n %a %u:%g %h' /opt/app/* /opt/app/*/* > /opt/listing
COPY --from=build --chown=app:app /out/share /usr/local/share
COPY --from=build --link /out/bin/ /usr/local/bin/
RUN --mount=type=tmpfs,target=/tmp/build \
    cd /tmp/build && echo x > f && cp f /opt/app/from-tmpfs
WORKDIR /opt/app/work
RUN touch made-here
USER app
WORKDIR /home/app/new/deeper
RUN touch mine && stat -c '%n %a %u:%g' .. ../* > /home/app/listing
"""
STAGE_MOUNTS_FILES: dict[str, str] = {}

CASES = {
    'py-venv': (PY_VENV, PY_VENV_FILES),
    'node-npm': (NODE_NPM, NODE_NPM_FILES),
    'apt-locale': (APT_LOCALE, APT_LOCALE_FILES),
    'users-chown': (USERS_CHOWN, USERS_CHOWN_FILES),
    'setcap': (SETCAP, SETCAP_FILES),
    'c-multistage': (C_MULTISTAGE, C_MULTISTAGE_FILES),
    'divert': (DIVERT, DIVERT_FILES),
    'cache-mounts': (CACHE_MOUNTS, CACHE_MOUNTS_FILES),
    'pip-user': (PIP_USER, PIP_USER_FILES),
    'edge': (EDGE, EDGE_FILES),
    'nginx': (NGINX, NGINX_FILES),
    'stage-mounts': (STAGE_MOUNTS, STAGE_MOUNTS_FILES),
}
