"""One benchmark run: the ceilings, hotpath (cache on and off), the FastAPI peer, then the
open-model Artillery run, each scenario measured after a warm-up on a freshly started server."""

from __future__ import annotations

import base64
import datetime as dt
import random
import secrets
import subprocess
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bench.suite import setup, webhooks
from bench.suite.openloop import run_open_loop
from bench.suite.procs import RssSampler, rss_bytes, tree
from bench.suite.profiles import Profile, profile, py_spy
from bench.suite.servers import HOST, Server, asgi_command, hotpath_command, running
from bench.suite.wrk import Load, Measured, run
from server.auth.keys import generate_dev_key


@dataclass(frozen=True)
class Options:
    seconds: float = 15.0  # wrk takes whole seconds
    warmup: float = 3.0  # 0: none
    connections: int = 16
    products: int = 10_000
    hot_products: int = 2_000  # product_get's ids: all of them stay in the local cache
    accounts: int = 50
    deep_pages: int = 100
    artillery_rate: int = 4
    artillery_seconds: int = 30
    artillery: bool = True
    # The budget's ratios: the ceiling and the budgeted reads measured in alternation, so a
    # box that gets slower or faster over the run moves both sides of each ratio alike.
    budget_rounds: int = 5
    budget_seconds: float = 6.0
    webhook_events: int = 5000  # 0: no webhook delivery run
    login_seconds: float = 0.0  # the login scenario is measured at least this long
    # The open-model run of the warm read (bench/suite/openloop.py): these shares of the peak
    # wrk measured, each offered for openloop_seconds; () for none.
    openloop_shares: tuple[float, ...] = (0.5, 0.8)
    openloop_seconds: float = 15.0
    # py-spy profiles (bench/suite/profiles.py) of these hotpath scenarios, each recorded for
    # profile_seconds twice (flame graph, raw stacks) after its measurement; () for none.
    profile_scenarios: tuple[str, ...] = (
        "ping",
        "product_get",
        "product_list_first",
        "order_place",
        "product_get_nocache",
    )
    profile_seconds: float = 5.0


@dataclass(frozen=True)
class Outcome:
    name: str
    server: str
    ceiling: str | None
    description: str
    measured: Measured


@dataclass
class Results:
    started: str
    options: Options
    outcomes: list[Outcome] = field(default_factory=list)
    peak_rss: dict[str, int] = field(default_factory=dict)
    # The largest process's RSS once a server's scenarios are over: what it holds between
    # logins, without argon2id's working memory (64 MiB per hash in flight).
    end_rss: dict[str, int] = field(default_factory=dict)
    artillery: dict[str, object] | None = None
    artillery_skipped: str | None = None
    # One dict per interleaved round: server name -> CPU µs per request.
    budget_rounds: list[dict[str, float]] = field(default_factory=list)
    webhooks: dict[str, object] | None = None
    profiles: dict[str, Profile] = field(default_factory=dict)
    open_model: list[dict[str, float]] = field(default_factory=list)
    profiles_skipped: str | None = None


class _Run:
    def __init__(self, options: Options, workdir: Path) -> None:
        self.options = options
        self.workdir = workdir
        self.log = workdir / "servers.log"
        self.results = Results(dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), options)
        # One key for every server of the run: the list ceiling verifies and signs cursors
        # with it, so a cursor from hotpath works on the ceiling and back.
        self.secret = secrets.token_urlsafe(32)

    def file(self, name: str, lines: list[str]) -> str:
        return str(setup.write_lines(self.workdir / name, lines))

    def measure(
        self,
        server: Server,
        name: str,
        script: str,
        env: dict[str, str],
        *,
        ceiling: str | None,
        description: str,
        connections: int | None = None,
        at_least: float = 0.0,
    ) -> None:
        options = self.options
        conns = connections or options.connections
        seconds = max(options.seconds, at_least)
        if options.warmup > 0:
            run(server.base, script, env, Load(options.warmup, conns), server.pid)
        measured = run(server.base, script, env, Load(seconds, conns), server.pid)
        self.results.outcomes.append(Outcome(name, server.name, ceiling, description, measured))
        if name in options.profile_scenarios:
            self.profile(server, name, script, env, conns)

    def profile(
        self, server: Server, name: str, script: str, env: dict[str, str], connections: int
    ) -> None:
        if py_spy() is None:
            self.results.profiles_skipped = "py-spy is not installed (it is in the dev extra)"
            return
        load = Load(self.options.profile_seconds, connections)
        try:
            self.results.profiles[name] = profile(
                server.base, script, env, load, server.pid, self.workdir / "profiles", name
            )
        except subprocess.CalledProcessError as exc:
            # Typically ptrace refused (a container without CAP_SYS_PTRACE): the run's numbers
            # stand without the profiles, and the report says why.
            reason = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
            self.results.profiles_skipped = f"py-spy failed: {reason[-1] if reason else exc}"

    def serve(
        self,
        name: str,
        command: list[str],
        env: dict[str, str],
        ready: str,
        body: Callable[[Server], None],
    ) -> None:
        with running(name, command, env, ready_path=ready, log=self.log) as server:
            sampler = RssSampler(server.pid).start()
            try:
                body(server)
            finally:
                self.results.peak_rss[name] = sampler.stop()
                self.results.end_rss[name] = max(rss_bytes(pid) for pid in tree(server.pid))


def run_suite(options: Options) -> Results:
    workdir = Path(tempfile.mkdtemp(prefix="hotpath-bench-"))
    with setup.bench_database() as url:
        accounts = setup.prepare_database(url, products=options.products, accounts=options.accounts)
        state = _Run(options, workdir)
        _ceilings(state, url, accounts)
        _hotpath(state, url, accounts)
        _peer(state, url, accounts)
        _budget(state, url, accounts)
        if options.webhook_events:
            state.results.webhooks = webhooks.measure(
                url, events=options.webhook_events, log=state.log
            )
        return state.results


def _ceilings(state: _Run, url: str, accounts: list[setup.Account]) -> None:
    """Each endpoint class's floor (bench/ceilings/), measured once for the table; the
    budget's rounds measure them again beside hotpath."""
    for name, load in _ceiling_loads(state, url, accounts).items():
        start = CEILINGS[name]

        def body(server: Server, name: str = name, load: CeilingLoad = load) -> None:
            description = CEILINGS[name].description
            state.measure(
                server, name, load.script, load.env(server), ceiling=None, description=description
            )

        state.serve(name, asgi_command(start.target), start.env(url, state), start.ready, body)


@dataclass(frozen=True)
class CeilingStart:
    target: str
    description: str
    ready: str
    pool: str | None = None  # CEILING_POOL: None for ceilings without a database

    def env(self, url: str, state: _Run) -> dict[str, str]:
        if self.pool is None:
            return {}
        return {
            "CEILING_DATABASE_URL": url,
            "CEILING_POOL": self.pool,
            "HOTPATH_SECRET_KEY": state.secret,
        }


@dataclass(frozen=True)
class CeilingLoad:
    script: str
    env: Callable[[Server], dict[str, str]]


CEILINGS = {
    "ceiling_json": CeilingStart(
        "bench.ceilings.fixed_json:app", "bare ASGI callable on granian, fixed JSON", "/"
    ),
    "ceiling_pk": CeilingStart(
        "bench.ceilings.pk_lookup:app",
        "bare ASGI, primary-key lookup + orjson, hotpath's pool",
        "/v1/products/1",
        "hotpath",
    ),
    "ceiling_pk_asyncpg": CeilingStart(
        "bench.ceilings.pk_lookup:app",
        "the same on asyncpg's pool with a no-op reset",
        "/v1/products/1",
        "asyncpg",
    ),
    "ceiling_list_first": CeilingStart(
        "bench.ceilings.list_page:app",
        "bare ASGI, the first list page's query, cursor and encoding",
        "/v1/products?limit=1",
        "hotpath",
    ),
    "ceiling_list_deep": CeilingStart(
        "bench.ceilings.list_page:app",
        "the same, the deep page behind a cursor",
        "/v1/products?limit=1",
        "hotpath",
    ),
    "ceiling_order": CeilingStart(
        "bench.ceilings.order_place:app",
        "bare ASGI, the order transaction's statements in one transaction",
        "/",
        "hotpath",
    ),
}


def _ceiling_loads(state: _Run, url: str, accounts: list[setup.Account]) -> dict[str, CeilingLoad]:
    """What each ceiling is sent: what its hotpath scenario sends."""
    options = state.options
    everything = {"BENCH_PRODUCTS": str(options.products)}
    anyone = {**everything, "BENCH_TOKENS": state.file("no-tokens.txt", ["none"])}
    buyers = {**everything, "BENCH_TOKENS": state.file("ceiling-tokens.txt", _subs(accounts))}

    def list_page(deep: bool) -> Callable[[Server], dict[str, str]]:
        def env(server: Server) -> dict[str, str]:
            first, deep_path = setup.list_paths(server.base, deep_pages=options.deep_pages)
            name = "deep" if deep else "first"
            return {
                "BENCH_PATHS": state.file(f"ceiling-{name}.txt", [deep_path if deep else first])
            }

        return env

    return {
        "ceiling_json": CeilingLoad("ping.lua", lambda _: {}),
        "ceiling_pk": CeilingLoad("product_get.lua", lambda _: anyone),
        "ceiling_pk_asyncpg": CeilingLoad("product_get.lua", lambda _: anyone),
        "ceiling_list_first": CeilingLoad("paths.lua", list_page(deep=False)),
        "ceiling_list_deep": CeilingLoad("paths.lua", list_page(deep=True)),
        "ceiling_order": CeilingLoad("order_place.lua", lambda _: buyers),
    }


def _subs(accounts: list[setup.Account]) -> list[str]:
    """Bearer tokens the order ceiling reads the buyer from (it checks no signature)."""
    return [
        "ceiling." + base64.urlsafe_b64encode(orjson.dumps({"sub": str(a.id)})).decode() + ".x"
        for a in accounts
    ]


def _hotpath_env(state: _Run, url: str) -> dict[str, str]:
    keys = state.workdir / "jwt"
    if not keys.exists():
        generate_dev_key(keys, "EdDSA")
    return {
        "HOTPATH_ENV": "production",
        "DATABASE_URL": url,
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "HOTPATH_SECRET_KEY": state.secret,
        "HOTPATH_JWT_KEYS_DIR": str(keys),
        "HOTPATH_DATA_DIR": str(state.workdir / "data"),
        # The production configuration: every budget counts the access log at info level.
        "HOTPATH_ACCESS_LOG": "true",
        "HOTPATH_ACCESS_TOKEN_TTL": "900",
        "HOTPATH_DRAIN_SECONDS": "0",
        "HOTPATH_LOG_LEVEL": "info",
        # The limiter runs (its cost is part of every number) but never says no to the load.
        "HOTPATH_RATE_LIMIT_READ": "100000/1",
        "HOTPATH_RATE_LIMIT_WRITE": "100000/1",
        "HOTPATH_RATE_LIMIT_AUTH": "100000/1",
    }


def _hotpath(state: _Run, url: str, accounts: list[setup.Account]) -> None:
    options = state.options
    env = _hotpath_env(state, url)

    def cached(server: Server) -> None:
        tokens = state.file("tokens.txt", setup.log_in(server.base, accounts))
        keys = state.file("keys.txt", setup.issue_api_keys(server.base, _read(tokens)))
        first, deep = setup.list_paths(server.base, deep_pages=options.deep_pages)
        hot = {"BENCH_PRODUCTS": str(options.hot_products)}
        logins = state.file("logins.txt", [f"{a.email}\t{a.password}" for a in accounts])
        every = {"BENCH_PRODUCTS": str(options.products)}
        json, pk = "ceiling_json", "ceiling_pk"
        # (name, script, environment, ceiling, description, connections if not the default)
        scenarios: list[tuple[str, str, dict[str, str], str | None, str, int | None]] = [
            ("ping", "ping.lua", {}, json, "GET /livez: routing, middleware", None),
            ("product_get", "product_get.lua", {**hot, "BENCH_TOKENS": tokens}, json,
             "GET /v1/products/{id}, JWT, warm cache", None),
            ("product_get_apikey", "product_get.lua", {**hot, "BENCH_TOKENS": keys}, json,
             "the same read with an hp_ API key", None),
            ("product_list_first", "paths.lua",
             {"BENCH_PATHS": state.file("first.txt", [first])}, "ceiling_list_first",
             "GET /v1/products?limit=50, first page", None),
            ("product_list_deep", "paths.lua", {"BENCH_PATHS": state.file("deep.txt", [deep])},
             "ceiling_list_deep", f"the page {options.deep_pages} cursors in", None),
            ("order_place", "order_place.lua", {**every, "BENCH_TOKENS": tokens},
             "ceiling_order", "POST /v1/orders, a fresh Idempotency-Key each", None),
            # Few connections: past 20 logins in flight from one address, the login throttle
            # answers 429 by design; 4 already keep the one argon2 slot of a 2-core box busy.
            ("login", "login.lua", {"BENCH_LOGINS": logins}, None,
             "POST /v1/auth/login, argon2id at the production cost, 4 connections", 4),
            ("mixed", "mixed.lua", {**hot, "BENCH_TOKENS": tokens}, pk,
             "80% product by id, 10% list page, 10% orders", None),
        ]  # fmt: skip
        for name, script, environment, ceiling, description, connections in scenarios:
            state.measure(
                server,
                name,
                script,
                environment,
                ceiling=ceiling,
                description=description,
                connections=connections,
                # A login is an argon2 hash of about a second: a window of one second (smoke
                # mode) on a busy box can end before the first answer, and wrk counts none.
                at_least=options.login_seconds if name == "login" else 0.0,
            )
        _open_model(state, server, _read(tokens))
        if options.artillery:
            _artillery(state, server, accounts)

    def one_read(
        name: str, products: int, ceiling: str, description: str
    ) -> Callable[[Server], None]:
        """A server of its own for one variant of product_get."""

        def body(server: Server) -> None:
            tokens = state.file(f"tokens-{name}.txt", setup.log_in(server.base, accounts))
            environment = {"BENCH_PRODUCTS": str(products), "BENCH_TOKENS": tokens}
            state.measure(
                server,
                name,
                "product_get.lua",
                environment,
                ceiling=ceiling,
                description=description,
            )

        return body

    uncached = one_read(
        "product_get_nocache",
        options.products,
        "ceiling_pk",
        "the same read, product cache off: PostgreSQL",
    )
    unlimited = one_read(
        "product_get_nolimit",
        options.hot_products,
        "ceiling_json",
        "product_get with the rate limiter off: what the limiter costs",
    )

    state.serve("hotpath", hotpath_command(), env, "/readyz", cached)
    nocache = {**env, "HOTPATH_PRODUCT_CACHE_SECONDS": "0"}
    state.serve("hotpath_nocache", hotpath_command(), nocache, "/readyz", uncached)
    nolimit = {**env, "HOTPATH_RATE_LIMITS": "false"}
    state.serve("hotpath_nolimit", hotpath_command(), nolimit, "/readyz", unlimited)


# (scenario, target, description, cache seconds, tokens with an audience, hotpath's scenario
# it is compared with)
PEERS = (
    ("peer_product_get", "bench.peers.fastapi_template:app",
     "FastAPI + SQLAlchemy async ORM + pydantic, user loaded per request", 0, False,
     "product_get_nocache"),
    ("peer_litestar_get", "bench.peers.litestar_app:app_from_env()",
     "Litestar, its JWT auth, msgspec, asyncpg (no-op reset), products cached 5 s", 5, False,
     "product_get"),
    ("peer_litestar_get_nocache", "bench.peers.litestar_app:app_from_env()",
     "the same, no cache: PostgreSQL", 0, False, "product_get_nocache"),
    ("peer_blacksheep_get", "bench.peers.blacksheep_app:app_from_env()",
     "BlackSheep, its JWT bearer auth, msgspec, asyncpg (no-op reset), cached 5 s", 5, True,
     "product_get"),
    ("peer_blacksheep_get_nocache", "bench.peers.blacksheep_app:app_from_env()",
     "the same, no cache: PostgreSQL", 0, True, "product_get_nocache"),
)  # fmt: skip


def _peer(state: _Run, url: str, accounts: list[setup.Account]) -> None:
    """The same authenticated read on the peers, each on a server of its own: warm ones
    (cached) against hotpath's warm read, uncached ones against hotpath's uncached read."""
    secret = secrets.token_urlsafe(32)
    plain = state.file("tokens-peer.txt", setup.peer_tokens(accounts, secret))
    audience = state.file(
        "tokens-peer-aud.txt", setup.peer_tokens(accounts, secret, audience=PEER_AUDIENCE)
    )
    for name, target, description, cache, with_audience, _ in PEERS:
        products = state.options.hot_products if cache else state.options.products
        load = {
            "BENCH_PRODUCTS": str(products),
            "BENCH_TOKENS": audience if with_audience else plain,
        }

        ceiling = "ceiling_json" if cache else "ceiling_pk"

        def read(
            server: Server,
            name: str = name,
            load: dict[str, str] = load,
            about: str = description,
            ceiling: str = ceiling,
        ) -> None:
            state.measure(server, name, "product_get.lua", load, ceiling=ceiling, description=about)

        env = {
            "PEER_DATABASE_URL": url,
            "PEER_JWT_SECRET": secret,
            "PEER_JWT_AUDIENCE": PEER_AUDIENCE,
            "PEER_CACHE_SECONDS": str(cache),
        }
        state.serve(name, asgi_command(target), env, "/livez", read)


PEER_AUDIENCE = "bench"


@dataclass(frozen=True)
class Budget:
    """``scenario``'s server CPU per request may be at most ``limit`` times ``ceiling``'s."""

    scenario: str
    ceiling: str
    limit: float


BUDGETS = (
    Budget("ping", "ceiling_json", 1.5),
    Budget("product_get", "ceiling_json", 2.0),
    Budget("product_get_nocache", "ceiling_pk", 1.1),
    Budget("product_list_first", "ceiling_list_first", 1.3),
    Budget("product_list_deep", "ceiling_list_deep", 1.3),
    Budget("order_place", "ceiling_order", 1.3),
)


def _budget(state: _Run, url: str, accounts: list[setup.Account]) -> None:
    """Every budgeted scenario and its ceiling, all their servers running at once (an idle
    server costs nothing), measured in alternation for a few rounds, so that a box getting
    slower or faster moves both sides of each ratio alike."""
    options = state.options
    env = _hotpath_env(state, url)
    starts: dict[str, tuple[list[str], dict[str, str], str]] = {
        "hotpath": (hotpath_command(), env, "/readyz"),
        "hotpath_nocache": (
            hotpath_command(),
            {**env, "HOTPATH_PRODUCT_CACHE_SECONDS": "0"},
            "/readyz",
        ),
    }
    for name in ("ceiling_json", "ceiling_pk", "ceiling_list_first", "ceiling_order"):
        start = CEILINGS[name]
        starts[name] = (asgi_command(start.target), start.env(url, state), start.ready)
    with ExitStack() as stack:
        servers = {
            name: stack.enter_context(
                running(name, command, environment, ready_path=ready, log=state.log)
            )
            for name, (command, environment, ready) in starts.items()
        }
        measurements = _budget_loads(state, servers, accounts)
        for server, script, load in measurements.values():
            if options.warmup > 0:
                run(
                    server.base, script, load, Load(options.warmup, options.connections), server.pid
                )
        samplers = {
            name: RssSampler(servers[name].pid).start() for name in ("hotpath", "hotpath_nocache")
        }
        try:
            for _ in range(options.budget_rounds):
                round_: dict[str, float] = {}
                for name, (server, script, load) in measurements.items():
                    measured = run(
                        server.base,
                        script,
                        load,
                        Load(options.budget_seconds, options.connections),
                        server.pid,
                    )
                    if measured.http_errors or measured.socket_errors:
                        raise RuntimeError(f"budget round of {name} had errors: {measured}")
                    round_[name] = measured.cpu_us_per_request
                state.results.budget_rounds.append(round_)
        finally:
            peak = state.results.peak_rss
            for name, sampler in samplers.items():
                peak[name] = max(peak.get(name, 0), sampler.stop())


def _budget_loads(
    state: _Run, servers: dict[str, Server], accounts: list[setup.Account]
) -> dict[str, tuple[Server, str, dict[str, str]]]:
    """Each measurement of a round: its server, wrk script and environment, in the order
    they run (each scenario next to its ceiling)."""
    options = state.options
    hot = {"BENCH_PRODUCTS": str(options.hot_products)}
    every = {"BENCH_PRODUCTS": str(options.products)}
    tokens = state.file("tokens-budget.txt", setup.log_in(servers["hotpath"].base, accounts))
    uncached = state.file(
        "tokens-budget-nocache.txt", setup.log_in(servers["hotpath_nocache"].base, accounts)
    )
    # Cursors signed with the run's one key: the same deep path works on both sides.
    first, deep = setup.list_paths(servers["hotpath"].base, deep_pages=options.deep_pages)
    first_page = {"BENCH_PATHS": state.file("budget-first.txt", [first])}
    deep_page = {"BENCH_PATHS": state.file("budget-deep.txt", [deep])}
    hotpath, ceiling_list = servers["hotpath"], servers["ceiling_list_first"]
    return {
        "ping": (hotpath, "ping.lua", {}),
        "ceiling_json": (servers["ceiling_json"], "ping.lua", {}),
        "product_get": (hotpath, "product_get.lua", {**hot, "BENCH_TOKENS": tokens}),
        "product_get_nocache": (
            servers["hotpath_nocache"],
            "product_get.lua",
            {**every, "BENCH_TOKENS": uncached},
        ),
        "ceiling_pk": (
            servers["ceiling_pk"],
            "product_get.lua",
            {**every, "BENCH_TOKENS": state.file("no-tokens.txt", ["none"])},
        ),
        "product_list_first": (hotpath, "paths.lua", first_page),
        "ceiling_list_first": (ceiling_list, "paths.lua", first_page),
        "product_list_deep": (hotpath, "paths.lua", deep_page),
        "ceiling_list_deep": (ceiling_list, "paths.lua", deep_page),
        "order_place": (hotpath, "order_place.lua", {**every, "BENCH_TOKENS": tokens}),
        "ceiling_order": (
            servers["ceiling_order"],
            "order_place.lua",
            {**every, "BENCH_TOKENS": state.file("ceiling-tokens.txt", _subs(accounts))},
        ),
    }


def _open_model(state: _Run, server: Server, tokens: list[str]) -> None:
    """The warm read offered at fixed rates, shares of the peak wrk just measured for it, with
    latency counted from each request's due time (no coordinated omission)."""
    options = state.options
    peak = next(o.measured.rps for o in state.results.outcomes if o.name == "product_get")
    rng = random.Random(7)
    requests = [
        f"GET /v1/products/{rng.randint(1, options.hot_products)} HTTP/1.1\r\n"
        f"Host: {HOST}\r\nAuthorization: Bearer {rng.choice(tokens)}\r\n\r\n".encode()
        for _ in range(5000)
    ]
    port = int(server.base.rsplit(":", 1)[1])
    for share in options.openloop_shares:
        found = run_open_loop(
            HOST, port, requests, rate=share * peak, seconds=options.openloop_seconds
        )
        state.results.open_model.append(
            {
                "share_of_peak": share,
                "rate": round(found.rate, 1),
                "sent": found.sent,
                "errors": found.errors,
                "p50_ms": round(found.percentile(0.5), 3),
                "p99_ms": round(found.percentile(0.99), 3),
                "p999_ms": round(found.percentile(0.999), 3),
                "send_lag_p99_ms": round(found.send_lag_p99_ms, 3),
            }
        )


def _artillery(state: _Run, server: Server, accounts: list[setup.Account]) -> None:
    from bench.suite import artillery

    if not artillery.artillery_available():
        state.results.artillery_skipped = "node and npm are not on PATH"
        return
    state.results.artillery = artillery.run_artillery(
        server.base,
        [(a.email, a.password) for a in accounts],
        state.options.products,
        arrival_rate=state.options.artillery_rate,
        duration=state.options.artillery_seconds,
        workdir=state.workdir,
    )


def _read(path: str) -> list[str]:
    return Path(path).read_text().split()
