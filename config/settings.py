"""Typed settings for every VisionNet process.

Layers, lowest first: ``config/defaults.toml`` (which documents each key), an
optional file named by ``VISIONNET_CONFIG_FILE``, then ``VISIONNET_*``
environment variables (``__`` separates a section from its key). Values are
validated once at start so a typo fails loudly instead of at the first job.
"""

from __future__ import annotations

import ipaddress
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from visionnet.config.unknown_keys import SettingsError as SettingsError
from visionnet.config.unknown_keys import check_environ, describe

DEFAULTS_FILE = Path(__file__).with_name("defaults.toml")
ENV_PREFIX = "VISIONNET_"
# The demo profile's model, by name: its weights ship with the model worker,
# which resolves ``builtin:`` refs (config knows no worker paths).
DEMO_MODEL_REF = "builtin:demo-cifar10"


class Section(BaseModel):
    """A section of the settings; a key it does not know is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


def is_loopback(host: str) -> bool:
    """True for addresses that only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_host(host: str) -> str:
    """A host as a URL writes it: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


class WebSettings(Section):
    host: str = Field("127.0.0.1", description="Address the web server binds.")
    port: int = Field(8000, ge=0, le=65535, description="Port of the web server.")
    api_token: str = Field("", description="Bearer token required on /api/v1; empty = none.")
    max_upload_bytes: int = Field(64 * 1024 * 1024, gt=0, description="Largest request body.")
    max_archive_bytes: int = Field(
        4 * 1024**3, gt=0, description="Largest archive upload to POST /index (streamed to disk)."
    )
    max_files: int = Field(256, gt=0, description="Most files in one classify request.")
    workers: int = Field(0, ge=0, description="Web server processes; 0 = two per core.")
    worker_class: Literal["sync", "gthread"] = Field(
        "sync", description="gunicorn worker class: sync (lowest latency) or gthread."
    )
    threads: int = Field(4, gt=0, description="Threads per web process (gthread only).")


class MilvusSettings(Section):
    uri: str = Field("", description="Milvus URI; empty = the embedded milvus-lite server.")
    token: str = Field("", description="Milvus token (user:password) for a real server.")
    embedded_port: int = Field(19530, ge=0, le=65535, description="Embedded server port.")
    embedded_host: str = Field(
        "127.0.0.1",
        description="Address the embedded Milvus serves clients on; not loopback (model "
        'workers on other hosts): engine = "server" with a token only.',
    )
    engine: Literal["lite", "server"] = Field(
        "lite", description="Embedded store: milvus-lite, or a real Milvus standalone server."
    )
    server_isolation: Literal["netns", "none"] = Field(
        "netns", description="Keep the server's internal ports off the network (netns)."
    )
    server_bin_dir: Path = Field(
        Path("~/.cache/visionnet/milvus-2.3.5"), description="Where the server's binaries go."
    )
    server_segment_max_mb: int = Field(
        512,
        gt=0,
        description="The embedded real server's largest segment in MB (Milvus' "
        "dataCoord.segment.maxSize).",
    )
    direct_writes: bool = Field(
        False, description="Model workers write vectors themselves (a real server only)."
    )
    timeout_s: float = Field(120.0, gt=0, description="Timeout of one write or search call.")
    search_ef: int = Field(128, gt=0, description="HNSW ef used by searches.")
    search_consistency: Literal["Session", "Strong", "Bounded"] = Field(
        "Session",
        description="Session: reads see every acknowledged write, waiting for no other; "
        "Strong: wait for the server's newest time; Bounded: up to 5 s stale.",
    )
    writer_lock_wait_s: float = Field(
        35.0, ge=0, description="How long a store worker waits for the single-writer lock."
    )
    writer_lock_ttl_s: float = Field(
        30.0, gt=0, description="The writer lock of a store worker that died expires after this."
    )
    lite_flush_rows: int = Field(
        4096,
        ge=0,
        description="Milvus Lite: the store writer flushes a collection once this many index "
        "rows were written to it since its last flush, when an index job that wrote to it "
        "ends, and after lite_flush_idle_s without writes to it; 0: after every write group. "
        "Rows not yet flushed survive a crash (milvus-lite's write-ahead log) and are "
        "searched by a scan until then.",
    )
    lite_flush_idle_s: float = Field(
        2.0, gt=0, description="Milvus Lite: a collection unwritten this long is flushed."
    )
    write_group_chunks: int = Field(
        16, gt=0, description="Most staged chunks the writer commits in one upsert and flush."
    )
    max_staged_chunks: int = Field(
        64, gt=0, description="Model workers wait while this many chunks await the writer."
    )


class ModelSettings(Section):
    classifier: str = Field(..., description="Classifier: hub id or local directory.")
    embedder: str = Field(..., description="Embedder: hub id or local directory.")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    batch_size: int = Field(32, gt=0, description="Images per forward pass.")
    dynamic_batching: bool = Field(
        True, description="Concurrent interactive requests share forward passes."
    )
    max_batch_wait_ms: float = Field(
        10.0, ge=0, description="How long a pass waits for more requests to join it."
    )
    interactive_threads: int = Field(
        16, gt=0, description="Interactive requests one interactive worker runs at once."
    )
    interactive_cpu_threads: int = Field(
        1,
        ge=0,
        description="CPU threads (torch intra-op) of one forward pass in the interactive "
        "worker; 0: torch's default, one per core.",
    )
    bulk_passes_at_once: int = Field(
        0,
        ge=0,
        description="Forward passes a CPU model worker runs at once for index chunks, each "
        "on cores / passes threads; 0: auto (2 on a CPU of 2 or more cores, 1 on a GPU).",
    )
    reader_threads: int = Field(
        2, gt=0, description="Threads that read, hash, decode and preprocess while the model runs."
    )
    offline: bool = Field(False, description="Never try the model hub.")
    runtime: Literal["auto", "torch", "onnxruntime"] = Field(
        "auto",
        description="What runs the models: auto = onnxruntime for fp32 on a CPU where the onnx "
        "extra is installed, else torch.",
    )
    precision: Literal["auto", "fp32", "fp16", "bf16", "int8"] = Field(
        "auto",
        description="Weights and activations: auto = bf16 on CPUs with AVX512-BF16/AMX, else "
        "fp32; bf16 (else fp16) on GPUs; int8 only when set, on onnxruntime.",
    )
    allow_mixed_vectors: bool = Field(
        False,
        description="A collection takes vectors of another runtime/precision of its model "
        "(only where the writing model's measured recall@10 against fp32 is >= 0.99).",
    )
    channels_last: bool = Field(
        True, description="channels_last memory format for conv nets (GPU and CPU)."
    )
    compile: bool = Field(False, description="torch.compile the models (slow first pass).")
    flip_invariant: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Average each image's outputs with its mirror's, so a flipped copy embeds "
        "and classifies the same (two passes' work): auto = as the model's config says "
        "(on for the demo model, off for hub models).",
    )
    warmup: bool = Field(True, description="Load the models and run one pass when a worker starts.")

    @model_validator(mode="after")
    def _runtime_runs_precision(self) -> ModelSettings:
        # The same checks and words as workers/models/choice.py's ChoiceError (config
        # imports no worker code; tests/test_choice.py holds the two to the same text).
        problem = runtime_conflict(self.runtime, self.precision)
        if problem:
            raise ValueError(problem)
        return self


def runtime_conflict(runtime: str, precision: str) -> str | None:
    """Why ``models.runtime`` cannot run ``models.precision`` on the CPU, or None."""
    if runtime == "torch" and precision == "int8":
        return (
            "models.precision int8 runs on onnxruntime only: set models.runtime to "
            "onnxruntime or auto"
        )
    if runtime == "onnxruntime" and precision in ("bf16", "fp16"):
        return (
            f"onnxruntime runs fp32 or int8 on the CPU, not {precision}: set models.runtime "
            "to torch or auto, or models.precision to fp32, int8 or auto"
        )
    return None


class RetentionSettings(BaseModel):
    """Seconds a finished job's record (its result, counts and errors) is kept, per job type.

    0: ``result_ttl_s``. One field per job type of ``visionnet.core.jobtypes``.
    """

    model_config = ConfigDict(extra="forbid")

    classify: int = Field(3600, ge=0, description="A finished classify job's record.")
    embed: int = Field(3600, ge=0, description="A finished embed job's record.")
    search: int = Field(3600, ge=0, description="A finished search job's record.")
    index: int = Field(0, ge=0, description="A finished index job's record (0: result_ttl_s).")
    delete: int = Field(0, ge=0, description="A finished delete job's record (0: result_ttl_s).")
    export: int = Field(
        0, ge=0, description="A finished export job's record and download (0: result_ttl_s)."
    )
    duplicates: int = Field(
        0, ge=0, description="A finished duplicates job's record and groups (0: result_ttl_s)."
    )


class JobSettings(Section):
    chunk_size: int = Field(256, gt=0, description="Files per index chunk.")
    plan_ahead_chunks: int = Field(
        16, gt=0, description="Chunks an index planner queues per step of its walk."
    )
    default_top_k: int = Field(5, gt=0, description="Default k for top-k and search.")
    max_top_k: int = Field(1000, gt=0, description="Largest k accepted.")
    max_errors_kept: int = Field(1000, ge=0, description="Per-file errors kept per job.")
    redelivery_timeout_s: int = Field(
        600,
        gt=0,
        description="Tasks held by a vanished worker come back after this.",
    )
    stall_timeout_s: int = Field(
        900, gt=0, description="A running job with no progress for this long is failed."
    )
    retention_s: RetentionSettings = Field(
        default_factory=RetentionSettings,
        description="How long a finished job's record is kept, per job type.",
    )
    max_deliveries: int = Field(
        3, gt=0, description="Runs of one task whose process died before it is given up."
    )
    chunk_time_limit_s: int = Field(
        480,
        gt=0,
        description="An index chunk still running after this long fails its files (a read "
        "hanging on a dead network share); its process is killed 60 s later. Keep it below "
        "redelivery_timeout_s - 60.",
    )
    extensions: list[str] = Field(..., description="Image file extensions indexed.")
    max_file_bytes: int = Field(
        200 * 1024**2,
        gt=0,
        description="Largest file a job reads (a camera's RAW file fits); larger ones are "
        "that file's error, checked before reading and while reading.",
    )
    classify_while_indexing: bool = Field(
        False, description="Index jobs also store each image's top label (one more pass)."
    )
    index_labels: list[str] = Field(
        default_factory=list,
        max_length=1000,
        description="Labels from words that index jobs store as each image's label (CLIP "
        "embedders only; empty: off). A job's own labels replace them.",
    )
    index_label_prompt: str = Field(
        "{}",
        pattern=r"^[^{}]*\{\}[^{}]*$",
        description='Template of index_labels, with "{}" once, where each label goes.',
    )
    max_search_queries: int = Field(
        10_000, gt=0, description="Most images one search job takes as queries (a folder)."
    )
    archive_max_unpacked_bytes: int = Field(
        16 * 1024**3, gt=0, description="Largest total an uploaded archive may unpack to."
    )
    archive_max_entries: int = Field(
        1_000_000, gt=0, description="Most entries an uploaded archive may hold."
    )
    keep_archives: bool = Field(
        False, description="Keep unpacked archives after their job's records expire."
    )
    max_list_urls: int = Field(
        10_000_000, gt=0, description="Most URLs one index job's URL list may hold."
    )


class DuplicatesSettings(Section):
    threshold: float = Field(
        # Measured (bench/duplicates.py, bench/RESULTS.md): the demo model's groups of
        # photos keep precision >= 0.99 down to 0.954; rounded up to the next 0.01.
        0.96,
        gt=0,
        le=1,
        description="Cosine similarity at or above which two images are near-duplicates "
        "(a job's threshold overrides it).",
    )
    neighbours: int = Field(
        10, ge=1, le=1000, description="Nearest neighbours looked at per image."
    )
    search_batch: int = Field(
        256, ge=1, le=4096, description="Query vectors sent in one store search call."
    )
    checkpoint_every: int = Field(
        2048,
        ge=1,
        description="Images between two checkpoints: a job whose worker died resumes from "
        "its last one.",
    )


class SourceSettings(Section):
    """Downloads of URL-list sources: the pool, its limits and the SSRF guard's exceptions."""

    allowed_networks: list[str] = Field(
        default_factory=list,
        description="CIDR networks the download guard lets through although they are "
        "loopback, private, link-local, multicast or reserved (e.g. 10.1.2.0/24); empty: none.",
    )
    download_threads: int = Field(16, gt=0, description="Downloads at once, in all.")
    per_host: int = Field(4, gt=0, description="Downloads at once from one host.")
    connect_timeout_s: float = Field(5.0, gt=0, description="Longest wait for a connection.")
    read_timeout_s: float = Field(
        15.0,
        gt=0,
        description="Longest one attempt may take from the request to the body's last byte "
        "(a server that trickles its body hits it too).",
    )
    max_bytes: int = Field(
        200 * 1024**2, gt=0, description="Largest body downloaded; a larger one is refused."
    )
    retries: int = Field(
        3, ge=0, description="Retries of a download that failed for a reason that can change."
    )
    backoff_s: float = Field(
        0.5, ge=0, description="First wait before a retry; doubles each time, with jitter."
    )
    max_retry_after_s: float = Field(
        60.0,
        ge=0,
        description="Longest Retry-After honoured; a longer one fails the URL (retryable) "
        "without waiting.",
    )
    max_redirects: int = Field(5, ge=0, description="Redirects followed per download.")
    user_agent: str = Field(
        "VisionNet/1 (image indexer)", min_length=1, description="User-Agent of downloads."
    )
    thumbnail_size: Literal[64, 128, 256, 512] = Field(
        256,
        description="Longest side of the JPEG thumbnail kept per downloaded image (the page "
        "shows URL images from it; the web never fetches).",
    )
    keep_downloads: bool = Field(
        False, description="Keep each downloaded image's full bytes under the data directory."
    )

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for text in value:
            try:
                ipaddress.ip_network(text, strict=True)
            except ValueError as exc:
                raise ValueError(f"sources.allowed_networks: {exc}") from None
        return value


class StackSettings(Section):
    worker_stop_wait_s: int = Field(
        120, gt=0, description="On stop, time a worker gets to finish its task before SIGKILL."
    )
    start_retries: int = Field(
        5, ge=0, description="Failed starts of one process before the whole stack stops."
    )
    redis_maxmemory_mb: int = Field(
        0,
        ge=0,
        description="The embedded Redis's memory limit in MB (0: none); past it, writes "
        "fail loudly (noeviction), never a job record or queued task dropped.",
    )
    store_nice: int = Field(
        0,
        ge=0,
        le=19,
        description="Niceness of the embedded Milvus Lite server and the store writer: "
        "above 0 their segment and index building yields the CPU to the models (index "
        "jobs faster, searches during them slower).",
    )
    redis_bind: str = Field(
        "",
        description="The embedded Redis also listens on TCP at this address (for workers on "
        "other hosts); empty: the unix socket only. Not loopback: redis_password required.",
    )
    redis_port: int = Field(6379, ge=1, le=65535, description="TCP port with redis_bind.")
    redis_password: str = Field(
        "", description="Password of the embedded Redis (requirepass); empty: none."
    )
    liveness_interval_s: float = Field(
        2.0, gt=0, description="How often a worker writes its liveness record to Redis."
    )
    liveness_ttl_s: float = Field(
        10.0,
        gt=0,
        description="A worker whose record is this old is gone from health and /metrics "
        "(a worker killed by SIGKILL, a host that lost power).",
    )

    @model_validator(mode="after")
    def _ttl_spans_beats(self) -> StackSettings:
        if self.liveness_ttl_s < 2 * self.liveness_interval_s:
            raise ValueError(
                "stack.liveness_ttl_s must be at least twice stack.liveness_interval_s, "
                "or a live worker drops out of health between two beats"
            )
        return self


class FlowerSettings(Section):
    host: str = Field("127.0.0.1", description="Address Flower binds.")
    port: int = Field(5555, ge=0, le=65535, description="Flower port.")
    basic_auth: str = Field("", description="user:password for Flower; empty = none.")
    task_events: bool = Field(
        False,
        description="Workers send task events from the start and the web a 'sent' event "
        "per task; off: workers start sending once Flower asks (within seconds of it "
        "starting), and small jobs skip the event traffic while nobody watches.",
    )


class Settings(BaseSettings):
    """All settings of one VisionNet deployment."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
    )

    profile: Literal["demo", "default"] = Field("demo", description="Model profile.")
    data_dir: Path = Field(Path("var"), description="State of the embedded stack.")
    allowed_roots: list[Path] = Field(default_factory=list, description="Readable roots.")
    redis_url: str = Field("", description="Redis URL; empty = a private embedded Redis.")
    result_ttl_s: int = Field(86400, gt=0, description="Lifetime of job records and results.")
    web: WebSettings
    milvus: MilvusSettings
    models: ModelSettings
    jobs: JobSettings
    flower: FlowerSettings
    stack: StackSettings
    duplicates: DuplicatesSettings = Field(default_factory=DuplicatesSettings)
    sources: SourceSettings = Field(default_factory=SourceSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        check_environ(os.environ, settings_cls, ENV_PREFIX, "__")  # typos fail, not ignored
        files: list[Path] = [DEFAULTS_FILE]
        user_file = os.environ.get(f"{ENV_PREFIX}CONFIG_FILE")
        if user_file:
            files.append(Path(user_file).resolve())
        # TomlConfigSettingsSource must be returned explicitly, or the TOML is ignored.
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=files, deep_merge=True),
        )

    @model_validator(mode="after")
    def _secure_listeners(self) -> Settings:
        if not is_loopback(self.web.host) and not self.web.api_token:
            raise ValueError(
                f"web.host={self.web.host!r} is not loopback: set VISIONNET_WEB__API_TOKEN"
            )
        if not is_loopback(self.flower.host) and not self.flower.basic_auth:
            raise ValueError(
                f"flower.host={self.flower.host!r} is not loopback: "
                "set VISIONNET_FLOWER__BASIC_AUTH=user:password"
            )
        if not is_loopback(self.stack.redis_bind or "127.0.0.1") and not self.stack.redis_password:
            raise ValueError(
                f"stack.redis_bind={self.stack.redis_bind!r} is not loopback: set "
                "VISIONNET_STACK__REDIS_PASSWORD (other hosts then use "
                "redis://:PASSWORD@host:port/0)"
            )
        self._check_milvus_host()
        if self.milvus.direct_writes and not self.milvus.uri and self.milvus.engine == "lite":
            raise ValueError(
                "milvus.direct_writes needs a real Milvus server (milvus.uri, or "
                'milvus.engine = "server"): Milvus Lite corrupts its log under several writers'
            )
        return self

    def _check_milvus_host(self) -> None:
        """An embedded Milvus that other hosts reach must ask for a password.

        Milvus Lite has no authentication at all; the real 2.3.5 server checks
        ``user:password`` tokens once authorization is on (``milvus_server``
        turns it on and sets root's password from ``milvus.token``).
        """
        m = self.milvus
        if m.uri:
            return
        if m.engine == "server" and m.token:
            user, _, password = m.token.partition(":")
            if user != "root" or not password or password == "Milvus":
                raise ValueError(
                    "milvus.token for the embedded server must be root:<password> (not "
                    "Milvus' default password): the server's root password is set from it"
                )
        if is_loopback(m.embedded_host):
            return
        if m.engine == "lite":
            raise ValueError(
                f"milvus.embedded_host={m.embedded_host!r} is not loopback, and Milvus Lite "
                'has no authentication: use milvus.engine = "server" with milvus.token'
            )
        if not m.token:
            raise ValueError(
                f"milvus.embedded_host={m.embedded_host!r} is not loopback: set "
                "VISIONNET_MILVUS__TOKEN=root:<password>"
            )

    @property
    def milvus_is_lite(self) -> bool:
        """The store is the embedded milvus-lite server: one writer, flushed writes."""
        return not self.milvus.uri and self.milvus.engine == "lite"

    # Derived locations, so every process agrees on them.
    @property
    def data_path(self) -> Path:
        return self.data_dir.resolve()

    @property
    def redis_socket(self) -> Path:
        return self.data_path / "redis" / "redis.sock"

    @property
    def effective_redis_url(self) -> str:
        """The URL every process of this host uses: the given one, else the embedded Redis's
        (its TCP address when it serves other hosts, so all of them use the same URL)."""
        if self.redis_url:
            return self.redis_url
        s = self.stack
        if not s.redis_bind:
            if s.redis_password:
                return f"redis+socket://:{quote(s.redis_password, safe='')}@{self.redis_socket}"
            return f"redis+socket://{self.redis_socket}"
        auth = f":{quote(s.redis_password, safe='')}@" if s.redis_password else ""
        return f"redis://{auth}{url_host(s.redis_bind)}:{s.redis_port}/0"

    @property
    def effective_milvus_uri(self) -> str:
        host = url_host(self.milvus.embedded_host)
        return self.milvus.uri or f"http://{host}:{self.milvus.embedded_port}"

    @property
    def classifier_ref(self) -> str:
        return DEMO_MODEL_REF if self.profile == "demo" else self.models.classifier

    @property
    def embedder_ref(self) -> str:
        return DEMO_MODEL_REF if self.profile == "demo" else self.models.embedder

    @property
    def resolved_roots(self) -> list[Path]:
        return [root.expanduser().resolve() for root in self.allowed_roots]

    @property
    def readable_roots(self) -> list[Path]:
        """Where jobs may read images: the allowed roots, and the folder that uploaded
        archives unpack to (the service's own, under the data directory)."""
        return [*self.resolved_roots, (self.data_path / "archives").resolve()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once; ``SettingsError`` says what to fix."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(describe(exc, Settings)) from None
