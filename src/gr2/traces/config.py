"""Configuration of the ``traces`` stage (docs/method.md §5). No heavy imports: read by :mod:`gr2.config`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from gr2.checks import at_least, check
from gr2.prompts.render import PromptConfig

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"


@dataclass
class TracesConfig:
    """Stage 2: reasoning traces from a stronger teacher, by rejection or targeted sampling."""

    # -- teacher --------------------------------------------------------------------------------
    teacher: Literal["local", "openai", "evidence"] = "local"
    """``local``: a transformers model on this machine (``model`` is a registry name, a
    ``save_pretrained`` folder or a cached hub id, loaded with ``gr2.llm.registry.load``).
    ``openai``: an OpenAI-compatible ``/chat/completions`` endpoint (vLLM, llama.cpp, TGI, …).
    ``evidence``: no LLM — LambdaMART ranks and the explanation is written from verifiable facts of
    the data (:mod:`gr2.traces.evidence`); deterministic, so one attempt per list."""
    model: str = "qwen2.5-1.5b"
    """Local: what ``gr2.llm.registry.load`` resolves. OpenAI: the ``model`` field of each request."""
    device: str | None = None
    """Local only: torch device (``None``: ``cuda`` when available, else ``cpu``)."""
    dtype: str = "float32"
    """Local only: weight dtype (``bfloat16`` on a GPU halves memory; CPUs here have no bf16 units)."""
    base_url: str = DEFAULT_BASE_URL
    """OpenAI only: requests go to ``{base_url}/chat/completions`` (the one-server case of
    ``base_urls``)."""
    base_urls: list[str] = field(default_factory=list)
    """OpenAI only: a pool of servers of the same model (``[http://a:8000/v1, http://b:8000/v1]``).
    Empty: the pool is ``[base_url]``. Otherwise it replaces ``base_url``, which must then be left at
    its default or be one of these (so a config never names a server it does not use). Each request
    goes to the server with the fewest requests in flight (round-robin among ties); a server that
    fails (connection error, timeout, 408/429/5xx) is left out for ``backoff_s * 2**(n-1)`` seconds
    (its n-th failure in a row, at most ``backoff_max_s``) and the request is retried on another
    (``max_retries``); docs/training.md, "A pool of teacher servers"."""
    api_key_env: str = ""
    """OpenAI only: name of the environment variable holding the API key (never the key itself, so
    it stays out of configs and manifests). Empty: no ``Authorization`` header (local servers)."""
    concurrency: int = 8
    """OpenAI only: requests in flight at once, over the whole pool (e.g. 3 servers × 8). ``batch_size``
    requests are sent per store flush, so keep ``batch_size >= concurrency``."""
    timeout_s: float = 300.0
    """OpenAI only: seconds per request before it counts as a (retryable) timeout."""
    max_retries: int = 5
    """OpenAI only: retries of one request after its first try, on any server of the pool, on HTTP
    408/429/5xx, timeouts and connection errors."""
    backoff_s: float = 1.0
    """OpenAI only: a server that fails is left out for ``backoff_s * 2**(n-1)`` seconds after its
    n-th failure in a row (capped by ``backoff_max_s``); a request waits only when every server is
    out, so with one server this is the wait before retry n."""
    backoff_max_s: float = 60.0
    """OpenAI only: longest time a failing server is left out (and so longest wait between two tries)."""
    extra_body: dict[str, Any] = field(default_factory=dict)
    """OpenAI only: extra request fields, e.g. ``{"top_k": -1, "repetition_penalty": 1.0}`` for vLLM,
    which otherwise applies the model's own ``generation_config`` defaults for non-OpenAI knobs."""

    # -- sampling -------------------------------------------------------------------------------
    mode: Literal["rejection", "targeted"] = "rejection"
    """``rejection``: target hidden, keep a trace only when the teacher's top-1 is the target (up to
    ``attempts`` tries). ``targeted``: target revealed in the prompt, one try, the ranking is forced to
    put the target first (label-aware; it hurt R@1 after SFT in the paper)."""
    attempts: int = 4
    """Rejection only: tries per example at most (each with its own shuffled presentation and seed)."""
    accept: Literal["top1", "top1_valid"] = "top1"
    """``top1``: a readable answer (``recommendations`` list, plus an explanation when reasoning) whose
    first recognised candidate is the target; duplicates, foreign entries and omissions are repaired
    in the SFT completion. ``top1_valid``: additionally the answer must be a valid permutation
    (parser status ``ok``). In targeted mode the top-1 condition is dropped (the ranking is forced)."""
    temperature: float = 0.7
    """Sampling temperature (0 = greedy; rejection then differs between attempts only by the
    shuffled presentation)."""
    top_p: float = 0.95
    """Nucleus-sampling mass."""
    max_new_tokens: int = 768
    """Tokens per answer at most (a 200-word explanation citing SIDs plus 10 SIDs is ~500-700 tokens
    for a teacher whose vocabulary splits SID tokens into pieces; a cut answer is unreadable)."""

    # -- data -----------------------------------------------------------------------------------
    split: str = "train"
    """Candidate lists the traces are made for (``candidates/{split}.parquet``)."""
    n_examples: int | None = None
    """Lists sampled (seeded) from the split; ``None``: all of them."""
    seed: int = 0
    """Seed of the list sample and of every request (each request's seed is derived from
    ``(seed, example_id, attempt)``)."""
    batch_size: int = 8
    """Requests per teacher call; the store is flushed after each call (a crash loses one batch)."""

    # -- teacher gate ---------------------------------------------------------------------------
    gate_lists: int = 200
    """Lists the teacher answers, shown shuffled, before any trace is sampled (``gr2.traces.gate``);
    taken from the sampled lists of ``split`` (not ``val``: the evidence teacher is fitted on the
    validation lists). 0 skips the gate."""
    gate_override: bool = False
    """Sample traces even when the teacher fails the gate (its top-1 on shuffled lists does not beat
    the pre-rank order's R@1 with a 95% interval above zero); the report still shows the failure."""
    prompt: PromptConfig = field(default_factory=PromptConfig)
    """How prompts are rendered (``gr2.prompts.render.PromptConfig``; default: shuffled candidates,
    reasoning on, full item format, beauty priming). A mapping of its fields is accepted too."""

    def __post_init__(self) -> None:
        if isinstance(self.prompt, dict):
            self.prompt = PromptConfig(**self.prompt)
        checks = {
            "attempts must be >= 1": self.attempts >= 1,
            "temperature must be >= 0": self.temperature >= 0,
            "top_p must be in (0, 1]": 0 < self.top_p <= 1,
            "max_new_tokens must be >= 1": self.max_new_tokens >= 1,
            "batch_size must be >= 1": self.batch_size >= 1,
            "concurrency must be >= 1": self.concurrency >= 1,
            "max_retries must be >= 0": self.max_retries >= 0,
            "timeout_s must be > 0": self.timeout_s > 0,
            f"backoff_s must be >= 0, got {self.backoff_s}": at_least(self.backoff_s, 0),
            f"backoff_max_s must be >= 0, got {self.backoff_max_s}": at_least(self.backoff_max_s, 0),
            "n_examples must be >= 1 or None": self.n_examples is None or self.n_examples >= 1,
            "gate_lists must be >= 0": self.gate_lists >= 0,
        }
        check("traces", checks)
        self._check_servers()
        if self.mode not in ("rejection", "targeted"):
            raise ValueError(f"traces.mode must be 'rejection' or 'targeted', got {self.mode!r}")
        if self.accept not in ("top1", "top1_valid"):
            raise ValueError(f"traces.accept must be 'top1' or 'top1_valid', got {self.accept!r}")
        if self.teacher not in ("local", "openai", "evidence"):
            raise ValueError(f"traces.teacher must be 'local', 'openai' or 'evidence', got {self.teacher!r}")

    def _check_servers(self) -> None:
        """``base_url`` and ``base_urls``: http(s) URLs with a host, no server twice, and ``base_url``
        not naming a server outside a given pool."""
        if isinstance(self.base_urls, (str, bytes)) or not isinstance(self.base_urls, (list, tuple)):
            # ValueError, not TypeError: gr2.config turns it into a one-line ConfigError
            raise ValueError(f"traces: base_urls must be a list of URLs, got {self.base_urls!r}")  # noqa: TRY004
        self.base_urls = list(self.base_urls)
        bad = [u for u in [self.base_url, *self.base_urls] if not _is_http_url(u)]
        normal = [u.rstrip("/") for u in self.base_urls]
        twice = sorted({u for u in normal if normal.count(u) > 1})
        checks = {
            f"base_url/base_urls must be http(s)://host[:port][/path] URLs, got {bad[:3]!r}": not bad,
            f"base_urls lists a server twice: {twice[:3]!r}": not twice,
            f"base_url {self.base_url!r} is not in base_urls (set one or the other; base_urls replaces "
            "base_url)": (not self.base_urls or bool(bad)
                          or self.base_url.rstrip("/") in (DEFAULT_BASE_URL, *normal)),
        }
        check("traces", checks)

    @property
    def servers(self) -> list[str]:
        """The OpenAI teacher's pool: ``base_urls``, or ``[base_url]`` when that is empty."""
        return list(self.base_urls) or [self.base_url]

    @property
    def max_attempts(self) -> int:
        """Tries per example in the current mode (targeted sampling is one pass)."""
        return self.attempts if self.mode == "rejection" else 1


def _is_http_url(url: object) -> bool:
    """An ``http://`` or ``https://`` URL with a host (and a valid port), no spaces, no query."""
    if not isinstance(url, str) or not url or any(c.isspace() for c in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port outside 0..65535 or not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.query and not parts.fragment
