"""hotpath's nginx configuration, rendered from deploy/nginx/nginx.conf.template.

One template serves compose (deploy/nginx/compose.conf, written by ``make deploy-config``, which
runs this module) and the local cluster (``python -m server cluster``): only addresses, paths
and the replica list differ. ``{{name}}`` is a placeholder; a line holding ``{{server}}`` is
repeated once per replica; a line left blank by an empty value is dropped.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from server.runtime.paths import ROOT

NGINX_DIR = ROOT / "deploy" / "nginx"
TEMPLATE = NGINX_DIR / "nginx.conf.template"
COMPOSE_CONFIG = NGINX_DIR / "compose.conf"
GENERATED = (
    "# Generated from deploy/nginx/nginx.conf.template by `make deploy-config`:"
    " edit the template, not this file.\n"
)
_PLACEHOLDER = re.compile(r"\{\{([a-z_]+)\}\}")
_SERVER = "server"


class TemplateError(ValueError):
    """The template and the values given for it do not fit each other."""


@dataclass(frozen=True, slots=True)
class Upstream:
    """One replica of the upstream block."""

    address: str  # host:port
    # Listed but sent nothing: a replica that is not ready, or is being stopped.
    down: bool = False
    # Looked up again while nginx runs (nginx 1.27.3+): a DNS name whose addresses change.
    resolve: bool = False

    def render(self) -> str:
        return self.address + " resolve" * self.resolve + " down" * self.down


@dataclass(frozen=True, slots=True)
class Site:
    """What differs between two deployments of the proxy."""

    listen: str
    runtime_dir: str  # pid file and temporary files
    access_log: str
    error_log: str
    servers: tuple[Upstream, ...]
    worker_processes: str = "auto"
    resolver: str = ""  # a resolver directive, needed by servers that resolve

    def values(self) -> dict[str, str]:
        return {
            "listen": self.listen,
            "runtime_dir": self.runtime_dir,
            "access_log": self.access_log,
            "error_log": self.error_log,
            "worker_processes": self.worker_processes,
            "resolver": self.resolver,
        }


# compose.yaml: the replicas are the service `api`, whose addresses Docker's DNS (127.0.0.11)
# gives; nginx runs as an unprivileged user on a read-only root with a tmpfs /tmp.
COMPOSE_SITE = Site(
    listen="8080",
    runtime_dir="/tmp",  # noqa: S108 - the container's own tmpfs
    access_log="/dev/stdout",
    error_log="/dev/stderr",
    servers=(Upstream("api:8000", resolve=True),),
    resolver="resolver 127.0.0.11 valid=10s ipv6=off;",
)


def render(site: Site, template: str | None = None) -> str:
    """The configuration for ``site``; TemplateError when a placeholder has no value, or a
    value no placeholder."""
    if not site.servers:
        raise TemplateError("an upstream needs at least one server")
    text = TEMPLATE.read_text() if template is None else template
    values = site.values()
    unused = set(values) | {_SERVER}
    lines: list[str] = []
    for line in text.splitlines(keepends=True):
        names = _PLACEHOLDER.findall(line)
        unknown = set(names) - set(values) - {_SERVER}
        if unknown:
            raise TemplateError(f"no value for {{{{{sorted(unknown)[0]}}}}}")
        unused -= set(names)
        filled = _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), line)
        if _SERVER in names:
            lines += [filled.replace("{{server}}", s.render()) for s in site.servers]
        elif not names or filled.strip():
            lines.append(filled)
    homeless = sorted(name for name in unused if name == _SERVER or values[name])
    if homeless:  # an empty value may go unused (the resolver, when no server resolves)
        raise TemplateError(f"the template has no place for {homeless}")
    return "".join(lines)


def compose_config() -> str:
    return GENERATED + render(COMPOSE_SITE)


def write_compose_config(path: Path = COMPOSE_CONFIG) -> None:
    path.write_text(compose_config())


if __name__ == "__main__":
    write_compose_config()
    print(f"wrote {COMPOSE_CONFIG.relative_to(ROOT)}", file=sys.stderr)
