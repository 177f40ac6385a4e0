"""Validated training parameters: the ``runtime``, ``pretrain`` and ``finetune`` groups.

No torch here: parameters are checked before a run starts, for every pipeline.
Each field's docstring is its entry in docs/parameters.md.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, model_validator

from model_lifecycle.params import StrictModel, UserPath
from model_lifecycle.trust.config import AttackParams, PixelAmount


class OptimizerParams(StrictModel):
    name: Literal["sgd", "adamw"] = "sgd"
    """`sgd` (Nesterov momentum) or `adamw`."""
    lr: float = Field(0.05, gt=0)
    """Peak learning rate."""
    momentum: float = Field(0.9, ge=0, lt=1)
    """Momentum (sgd only)."""
    weight_decay: float = Field(5e-4, ge=0)
    """Weight decay; never applied to norms and biases."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam betas (adamw only)."""
    norm_bias_lr_scale: float = Field(1.0, ge=0)
    """Learning-rate multiplier for batch-norm biases."""
    norm_weight_lr_scale: float = Field(1.0, ge=0)
    """Learning-rate multiplier for batch-norm scales (0: frozen)."""


class ScheduleParams(StrictModel):
    kind: Literal["cosine", "onecycle", "constant"] = "cosine"
    """Learning-rate schedule: `cosine`, `onecycle` or `constant` (after warm-up)."""
    warmup_epochs: float | None = Field(1.0, ge=0)
    """Epochs of linear warm-up (onecycle: the rising part)."""
    warmup_fraction: float | None = Field(None, ge=0, lt=1)
    """Warm-up as a share of all steps instead of epochs (for `budget_seconds`, where the
    epoch count is known only at run time); set `warmup_epochs: null` with it."""

    @model_validator(mode="after")
    def _one_warmup(self) -> ScheduleParams:
        if (self.warmup_epochs is None) == (self.warmup_fraction is None):
            raise ValueError("set exactly one of schedule.warmup_epochs and "
                             "schedule.warmup_fraction (the other null)")
        return self

    def warmup_steps(self, total_steps: int, steps_per_epoch: int) -> int:
        """Warm-up steps of a schedule of ``total_steps``."""
        if self.warmup_fraction is not None:
            return round(self.warmup_fraction * total_steps)
        return round(self.warmup_epochs * steps_per_epoch)


class DistributedParams(StrictModel):
    """``runtime.distributed`` — DistributedDataParallel training, launched from inside the
    training node (docs/distributed.md). One process per node and nnodes 1: off."""

    nproc_per_node: int = Field(1, ge=1)
    """Training processes on this machine (one per GPU; on the CPU, each gets
    cores / nproc_per_node threads); 1 with nnodes 1: no DDP."""
    nnodes: int = Field(1, ge=1)
    """Machines taking part; the others run `python -m
    model_lifecycle.training.distributed_worker` (docs/distributed.md)."""
    node_rank: int = Field(0, ge=0)
    """This machine's rank; `kedro run` is always node 0 (the other machines' worker
    command takes its own `--node-rank`)."""
    rdzv_endpoint: str | None = None
    """`host:port` of node 0 that every machine can reach (needed when nnodes > 1;
    one machine picks a free local port)."""
    backend: Literal["auto", "gloo", "nccl"] = "auto"
    """Process-group backend: `auto` (nccl on CUDA, gloo on the CPU), `gloo` or `nccl`."""
    sync_batchnorm: bool = False
    """Batch-norm statistics over the global batch: torch's SyncBatchNorm on CUDA, the
    same statistics summed over gloo on the CPU; saved models keep plain batch norms."""
    max_restarts: int = Field(0, ge=0)
    """Restarts of all ranks after one fails (0: the node stops with the error)."""
    rdzv_timeout: int = Field(300, ge=1)
    """nnodes > 1: seconds node 0 waits for the other machines to join before it stops
    with an error (torch's rendezvous waits in C++: Ctrl-C takes effect only then)."""

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    @model_validator(mode="after")
    def _endpoint_when_needed(self) -> DistributedParams:
        if self.node_rank >= self.nnodes:
            raise ValueError(f"node_rank {self.node_rank} needs nnodes above it "
                             f"(nnodes is {self.nnodes})")
        if self.nnodes > 1 and not _is_endpoint(self.rdzv_endpoint):
            raise ValueError(f"nnodes {self.nnodes} needs rdzv_endpoint as host:port of "
                             f"node 0 (port 1-65535), not {self.rdzv_endpoint!r}")
        return self


def _is_endpoint(text: str | None) -> bool:
    host, _, port = (text or "").rpartition(":")
    return bool(host.strip("[]")) and port.isdigit() and 0 < int(port) < 65536


class RuntimeParams(StrictModel):
    """``params:runtime`` — where and how training runs."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto` (CUDA when present), `cpu` or `cuda`."""
    seed: int = 0
    """Seeds torch, numpy and every data order and augmentation."""
    num_threads: int | None = Field(None, ge=1)
    """CPU threads for torch; null: torch's default (all cores)."""
    channels_last: bool = True
    """Channels-last memory layout for convolutions."""
    mixed_precision: bool = True
    """bfloat16 autocast on CUDA (ignored on the CPU: see `cpu_bfloat16`)."""
    cpu_bfloat16: bool = False
    """bfloat16 autocast for the training steps on a CPU with bfloat16 instructions
    (AVX512-BF16 or AMX; e.g. AMD Zen 4 and 5, Intel Sapphire Rapids): 1.3-1.8x more
    training images per second there (benchmarks/cpu_bfloat16.py); on other CPUs, where
    it would only add conversions, training stays float32 and the log says so. Weights,
    optimizer state, the losses, evaluation, test-time augmentation and quantization-
    aware training stay float32."""
    compile: bool = False
    """Train through `torch.compile` of the model (pretrain, finetune, prune recovery,
    distillation). The first step compiles (tens of seconds; later runs reuse
    Inductor's on-disk cache); worth it on a GPU, rarely on a CPU, where it needs a C++
    compiler."""
    data_on_device: bool = False
    """Move the training images (uint8) to the device once and gather and augment every
    batch there, instead of on the CPU batch by batch (the same batches for a seed). On a
    GPU they must fit in its memory (CIFAR-10: 150 MB)."""
    tf32: bool = False
    """TensorFloat-32 for float32 matrix products and convolutions on CUDA (false:
    PyTorch's defaults, TF32 for convolutions only); ignored on the CPU."""
    distributed: DistributedParams = DistributedParams()
    """DistributedDataParallel training of pretrain, finetune, prune recovery and
    distillation (docs/distributed.md)."""


def resume_needs_checkpoint(params: Any, info: ValidationInfo) -> Any:
    """`resume: true` without a `checkpoint` would train from the start, silently."""
    if params.resume and not params.checkpoint:
        group = (info.context or {}).get("group", "the group")
        raise ValueError(f"{group}.resume is true but {group}.checkpoint is null, so there "
                         f"is nothing to resume from: set {group}.checkpoint to a file "
                         "(written after every epoch) or resume to false")
    return params


class PretrainParams(StrictModel):
    """Validated ``pretrain`` group of ``parameters_pretrain.yml``."""

    method: Literal["simclr", "simsiam"] = "simclr"
    """`simclr` (NT-Xent, contrastive) or `simsiam` (non-contrastive)."""
    arch: str = "small_cnn"
    """Encoder architecture (see the model registry in the README)."""
    arch_kwargs: dict[str, Any] = {}
    """Architecture options, e.g. `{width: 0.5}`."""
    epochs: int | float = Field(30, gt=0)
    """Passes over the training images; fractional: the last pass stops part-way."""
    budget_seconds: float | None = Field(None, gt=0)
    """Seconds of training (warm-up included): the epoch count is set from a measured
    warm-up so that the schedule ends inside them, and re-planned after every epoch at
    the pace the run keeps (shorter or longer); `epochs` is then ignored. The final
    k-NN and linear-probe check of the encoder comes after it (not counted). Resumed
    (`resume`), the budget starts again and the epochs are planned anew."""
    batch_size: int = Field(256, ge=2)
    """Images per batch (two views each)."""
    optimizer: OptimizerParams = OptimizerParams(lr=0.3, weight_decay=1e-4)
    """Optimizer."""
    schedule: ScheduleParams = ScheduleParams(kind="cosine", warmup_epochs=2)
    """Learning-rate schedule."""
    temperature: float = Field(0.2, gt=0)
    """NT-Xent temperature (simclr)."""
    projection_dim: int = Field(128, ge=2)
    """Output size of the projection head."""
    hidden_dim: int = Field(512, ge=2)
    """Hidden size of the projection (and SimSiam prediction) head."""
    knn_k: int = Field(20, ge=1)
    """Neighbours of the k-NN monitor (val against train_labeled)."""
    eval_every: int = Field(5, ge=1)
    """Epochs between k-NN checks (the last epoch is always checked)."""
    clip_grad_norm: float | None = Field(None, gt=0)
    """Gradient-norm clipping; null: none."""
    checkpoint: str | None = None
    """A file written after every epoch; null: none."""
    resume: bool = False
    """Continue a killed run from `checkpoint` when it exists (needs `checkpoint`)."""

    @model_validator(mode="after")
    def _resume_from_a_checkpoint(self, info: ValidationInfo) -> Any:
        return resume_needs_checkpoint(self, info)


class AdversarialTrainingParams(AttackParams):
    """``finetune.adversarial``: how the ``robust`` pipeline's model trains on adversarial
    examples (Wong et al. 2020, "Fast is better than free")."""

    method: Literal["fgsm_rs", "pgd"] = "fgsm_rs"
    """`fgsm_rs` (FGSM from a random start: one extra gradient per step) or `pgd`
    (`steps` extra gradients per step)."""
    alpha: PixelAmount = Field(10 / 255, gt=0, le=1)
    """Attack step on the 0–1 scale (fgsm_rs: 1.25 × epsilon, as Wong et al.)."""
    check_images: int = Field(256, ge=1)
    """Val images attacked with PGD after every epoch: the best robust epoch is kept
    and a collapse (catastrophic overfitting) is logged."""
    check_steps: int = Field(10, ge=1)
    """PGD steps of that check."""
    budget_seconds: float | None = Field(None, gt=0)
    """Seconds of adversarial training; null: `finetune.budget_seconds` (or `epochs`)."""
    init: Literal["recipe", "finetuned"] = "recipe"
    """Where it starts: `recipe` (as the fine-tune does, `finetune.init`) or `finetuned`
    (the fine-tuned model, `finetuned_model`: adversarial fine-tuning of the standard
    model)."""
    lr: float | None = Field(None, gt=0)
    """Peak learning rate of the adversarial run; null: `finetune.optimizer.lr`. A run
    from the fine-tuned model usually wants a smaller one."""
    whiten_stem: bool | None = None
    """Whether the adversarial run's first convolution starts as frozen patch-whitening
    filters; null: `finetune.whiten_stem`. Whitening scales the data's weakest patch
    directions up (by 1 / sqrt(variance)), which are the ones a small L∞ perturbation
    reaches most easily; a learned stem can turn them down."""

    @model_validator(mode="after")
    def _whitening_needs_a_fresh_stem(self) -> AdversarialTrainingParams:
        if self.whiten_stem and self.init == "finetuned":
            raise ValueError("finetune.adversarial.whiten_stem: true would overwrite the "
                             "fine-tuned model's first convolution: use it with init: "
                             "recipe, or set it to null")
        return self


class LoraParams(StrictModel):
    """``finetune.lora``: the low-rank adapters of `strategy: lora` (Hu et al. 2022),
    read only when the strategy is `lora`."""

    rank: int = Field(4, ge=1)
    """Rank of each adapter (parameters trained per adapted layer grow with it)."""
    alpha: float = Field(8.0, gt=0)
    """Scale of the adapters' update: the update is multiplied by alpha / rank."""
    dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout on the adapters' input while training."""
    lr: float | None = Field(None, gt=0)
    """Learning rate of the adapters and the head; null: `finetune.optimizer.lr`. Adapters
    start as a zero update and hold few parameters, so they usually want a larger rate
    than full fine-tuning of the same model (Hu et al. 2022 tune it apart)."""
    target_modules: list[str] | None = None
    """Encoder layers that get adapters: module names or dotted name endings (e.g.
    `self_attention`, `mlp.0`); null: the attention and MLP linears of a transformer,
    every convolution of a CNN. A pattern that matches no layer stops the run."""

    @model_validator(mode="after")
    def _patterns(self) -> LoraParams:
        if self.target_modules is not None and not all(p.strip() for p in
                                                       self.target_modules or [""]):
            raise ValueError("target_modules must list non-empty module names, or be null "
                             "for the architecture's default")
        return self


class FinetuneParams(StrictModel):
    """Validated ``finetune`` group of ``parameters_finetune.yml``."""

    init: Literal["pretrained", "scratch", "torchvision_weights"] = "pretrained"
    """`pretrained` (the latest pretrained_encoder), `scratch` or `torchvision_weights`."""
    weights_path: UserPath | None = None
    """torchvision_weights: a local .pth file (nothing is downloaded)."""
    arch: str = "small_cnn"
    """Architecture for scratch / torchvision_weights (pretrained uses the encoder's)."""
    arch_kwargs: dict[str, Any] = {}
    """Architecture options, e.g. `{width: 0.5}`."""
    strategy: Literal["full", "linear_probe", "partial", "bitfit", "lora"] = "full"
    """Which parameters train: `full`, `linear_probe`, `partial`, `bitfit` or `lora`
    (low-rank adapters + the head, merged into the model after training)."""
    frozen_stages: int = Field(0, ge=0)
    """partial: the first K encoder stages stay frozen."""
    lora: LoraParams = LoraParams()
    """lora: the adapters (ignored by the other strategies)."""
    head_init: Literal["random", "linear_probe"] = "random"
    """How the head on a pretrained encoder starts: `random`, or `linear_probe`: a logistic
    regression fitted on the frozen encoder's features of train_labeled first (LP-FT), so
    fine-tuning starts at the probe's accuracy and distorts the pretrained features less.
    A scratch model's head always starts random (its features are random too)."""
    epochs: int | float = Field(30, gt=0)
    """Passes over train_labeled; fractional: the last pass stops part-way."""
    budget_seconds: float | None = Field(None, gt=0)
    """Seconds of training (warm-up and val checks included): the epoch count is set from
    a measured warm-up so that the schedule ends inside them, and re-planned after every
    epoch at the pace the run keeps (shorter or longer); `epochs` is then ignored.
    Resumed (`resume`), the budget starts again and the epochs are planned anew."""
    batch_size: int = Field(64, ge=2)
    """Images per batch."""
    optimizer: OptimizerParams = OptimizerParams(lr=0.05, weight_decay=5e-4)
    """Optimizer."""
    schedule: ScheduleParams = ScheduleParams(kind="onecycle", warmup_epochs=3)
    """Learning-rate schedule."""
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    """Label smoothing of the cross-entropy."""
    clip_grad_norm: float | None = Field(None, gt=0)
    """Gradient-norm clipping; null: none."""
    patience: int | None = Field(None, ge=1)
    """Early stopping: epochs without a better val accuracy; null: none."""
    eval_every: int = Field(1, ge=1)
    """Epochs between val checks (the last epoch is always checked)."""
    ema_decay: float | None = Field(None, gt=0, lt=1)
    """Evaluate and keep an exponential moving average of the weights, e.g. 0.99."""
    flip_tta: bool = False
    """Average predictions with mirrored images (natural images only)."""
    shift_tta: int = Field(0, ge=0)
    """Also average with copies shifted diagonally by ± this many pixels."""
    whiten_stem: bool = False
    """scratch only: the first convolution becomes frozen patch-whitening filters."""
    dirac_convs: bool = False
    """scratch only: later convolutions start as partial identities."""
    checkpoint: str | None = None
    """A file written after every epoch; null: none."""
    resume: bool = False
    """Continue a killed run from `checkpoint` when it exists (needs `checkpoint`)."""

    @model_validator(mode="after")
    def _resume_from_a_checkpoint(self, info: ValidationInfo) -> Any:
        return resume_needs_checkpoint(self, info)
    adversarial: AdversarialTrainingParams = AdversarialTrainingParams()
    """Adversarial fine-tuning of `robust_model` (`kedro run --pipelines=robust`);
    `finetuned_model` trains on clean images."""

    @model_validator(mode="after")
    def _weights_path_when_needed(self) -> FinetuneParams:
        if self.init == "torchvision_weights" and not self.weights_path:
            raise ValueError("init 'torchvision_weights' needs finetune.weights_path, a local "
                             "torchvision weights file")
        for key in ("whiten_stem", "dirac_convs"):
            if getattr(self, key) and self.init != "scratch":
                raise ValueError(f"finetune.{key} would overwrite {self.init} weights: use it "
                                 "with init: scratch, or set it to false")
        return self
