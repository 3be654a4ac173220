"""cldyn_lib: the library behind the cldyn book on the dynamics of learning and forgetting.

One import gives a reader every name the chapters use::

    import cldyn_lib as cl
    losses = cl.simulate(n_tasks=25, dim=100, epochs=6, lr=0.01, target="reflect")
    cl.recovery_score(losses, epoch=1)

The package is a house of floors; a module imports only from its own floor or lower ones:

- ground floor (``config``, ``metrics``, ``results``, ``checkpoint``, ``files``, ``plots``,
  ``batching``, ``stats``): configs, the loss-matrix metrics, results with provenance, the
  generic checkpoint store, atomic files, shared axes conventions, the batched optimizer,
  the contrasts over seeds behind every verdict;
- ``data``: articles, tokenised documents, Omniglot, CIFAR-10, and where they are found;
- ``models``: GPT-NeoX (and its batched forward), the pre-trained stand-in, the ConvNet,
  the ResNet, the image models;
- two wings, one per paper, which never import each other: ``cyclic`` (Yang et al., Yang et
  al.: the cyclic engine, batched seeds, probes, the toy model, vision, sweeps, figures)
  and ``sequential`` (Frati et al., Frati et al.: zapping, pre-training, transfer, zap
  divergence, optimizers, their studies and figures);
- ``book``: glue, slider panels, the claims of the status page;
- ``launch`` and ``cli``: many runs on any executor, and the command line.

Every name below is loaded on first use (PEP 562), so ``import cldyn_lib`` imports neither
torch nor transformers; ``book/api.md`` lists them with the chapter that teaches each.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: module -> the public names it gives ``cldyn_lib`` (each name is defined there)
API: dict[str, tuple[str, ...]] = {
    "config": (
        "Config", "ConfigError", "SCALES", "check_notebook_parameters", "resolve_device",
        "resolve_scale", "seed_everything", "set_torch_threads",
    ),
    "metrics": (
        "after_training_rows", "aligned_losses", "backward_transfer", "check_loss_matrix",
        "default_schedule", "forgetting", "forgetting_per_task", "priming", "recovery_parts",
        "recovery_score", "recovery_scores", "shift_averaged_loss", "spearman",
    ),
    "results": (
        "Result", "committed_result", "cpu_signature", "live_result", "load_or_compute",
        "load_result", "may_compute", "provenance", "reproduces", "reproduction_tolerance",
        "result_path", "results_dir", "save_result",
    ),
    "checkpoint": ("CheckpointError", "DivergedError", "deterministic"),
    "files": ("cache_dir", "write_atomic"),
    "plots": (
        "band", "plot_circle", "plot_loss_curve", "plot_recovery_scores",
        "plot_shift_averaged", "plot_style",
    ),
    "batching": ("StackedOptimizer", "VmapOptions"),
    "speed": ("matmul_rate",),
    "progress": ("in_book_build", "progress_enabled"),
    "legibility": ("COLUMN_PX", "MIN_FONT_PX", "displayed_font_px", "make_legible"),
    "stats": ("Criterion", "Outcome", "VERDICTS", "combine_scales", "decide", "verdict_of"),
    "data.fetch": ("ChecksumError", "CorruptDataError", "DataNotFoundError", "DataSource"),
    "data.articles": ("load_articles", "load_tokenizer"),
    "data.documents": ("select_documents", "tokenize_pool"),
    "data.texts": ("load_texts", "tokenize_texts"),
    "data.omniglot": ("N_TRAIN_DRAWINGS", "load_omniglot", "load_omniglot_tensors", "rotate_tasks"),
    "data.cifar10": ("load_cifar10",),
    "models.gpt_neox": ("build_random", "load_pretrained", "pythia_arch"),
    "models.causal_lm": (
        "BLOCK_PATHS", "inspect_causal_lm", "load_causal_lm", "load_lm_tokenizer",
        "transformer_blocks",
    ),
    "models.small_lm": ("SmallLMConfig", "load_small_lm", "pretrain_small_lm"),
    "models.convnet": ("ConvNet",),
    "models.resnet": ("ResNet",),
    "cyclic.config": ("CyclicConfig",),
    "cyclic.state": ("CyclicState", "setup_cyclic"),
    "cyclic.engine": ("evaluate_documents", "run_cyclic", "train_episode"),
    "cyclic.result": ("CyclicResult", "load_reference_npz"),
    "cyclic.estimate": ("describe_estimate", "estimate_cyclic"),
    "cyclic.batched": ("run_cyclic_batched", "run_seeds"),
    "cyclic.reference_loop": ("reference_style_run",),
    "cyclic.pythia_scale": (
        "PYTHIA_SCALE_PAPER", "flops_estimate", "memory_estimate_gb", "pythia_scale_plan",
        "pythia_scale_tiny", "run_time_estimate",
    ),
    "cyclic.probes": (
        "ProbeConfig", "ProbeResult", "Probes", "document_gradients", "estimate_memory",
        "pairwise_recovery", "probe_study", "run_probed",
    ),
    "cyclic.structure": (
        "RESIDUAL_EDGES", "block_contrast", "cosine_matrix", "diagonal_peak", "helix_measures",
        "lag_profile", "pca", "probe_summary", "stepwise_ratio", "stripe_period",
        "update_sizes", "weight_residuals",
    ),
    "cyclic.nulls": (
        "null_structure", "random_map_null", "random_walk", "structure_measures",
        "uncorrelated_updates",
    ),
    "cyclic.probe_figures": ("plot_heatmap", "plot_probe_maps", "probe_dashboard"),
    "cyclic.toy": (
        "TOY_SEEDS", "ToyConfig", "circle_modes", "circle_order", "epoch_map", "pca_2d",
        "run_toy", "simulate", "stable_lr_limit", "toy_dashboard",
    ),
    "cyclic.vision": (
        "VisionConfig", "run_vision", "run_vision_seeds", "vision_items", "vision_preset",
        "vision_runs", "vision_study", "vision_study5",
    ),
    "cyclic.sweeps": (
        "BOOK_SWEEPS", "rerun_sweep_run", "CyclicSweep", "CyclicSweepData", "book_sweep", "doc_recovery_scores",
        "load_cyclic_sweep", "run_cyclic_sweep", "summarize_run", "sweep_trend",
    ),
    "cyclic.figures": (
        "MIN_FORGOTTEN", "cyclic_dashboard", "plot_shift_averaged_runs", "recovery_parts_of",
        "recovery_scores_of", "seed_band_dashboard", "sweep_curves", "sweep_figure",
        "sweep_scores", "vision_dashboard",
    ),
    "cyclic.analyse": (
        "Analysis", "RECOVERY_CRITERION", "analyse", "analysis_config", "recovery_verdict",
    ),
    "cyclic.report": ("analysis_dashboard", "report_figure", "write_report"),
    "cyclic.analyse_command": ("analysis_command",),
    "cyclic.scales": (
        "CLI_MATCH_TOLERANCE", "LIVE_WIDTHS", "LM_SEEDS", "OWN_MODEL", "live_cyclic_config",
        "pythia_comparison", "run_pythia_comparison", "seed_band_config",
    ),
    "sequential.zapping": ("zap", "zap_rows", "zap_std"),
    "sequential.optimizers": (
        "AdamP", "DiagonalFisher", "MomentTracker", "VARIANTS", "VARIANT_LABELS",
        "build_optimizer",
    ),
    "sequential.pretrain": (
        "MODE_LABELS", "PRETRAIN_MODES", "PretrainConfig", "build_pretrain_model",
        "load_or_pretrain", "load_pretrain_data", "pretrain",
    ),
    "sequential.transfer": ("TransferConfig", "TransferResult", "load_transfer_data"),
    "sequential.transfer_engine": ("run_transfer",),
    "sequential.batched": ("run_transfer_batched",),
    "sequential.divergence": (
        "DivergenceConfig", "DivergenceStudy", "half_life", "run_divergence",
        "run_divergence_study",
    ),
    "sequential.transfer_studies": (
        "SHOCK_ARMS", "ShockStudy", "arm_config", "best_probe", "probe_at_full_lr",
        "run_feature_stats", "run_shock_study", "zap_gains",
    ),
    "sequential.divergence_measures": ("control_drift", "divergence_summary", "peak_then_fall"),
    "sequential.sequence": (
        "SequenceStudy", "best_lr_index", "epoch1_since_training", "loss_since_training",
        "loss_spikes", "run_sequence_study", "sequence_metrics", "sequence_summary",
        "untrained_interference",
    ),
    "sequential.sequence_sweeps": (
        "OPTIMIZER_PAIR", "SequenceSweep", "open_question_studies", "pair_at_best_lr",
        "result_name", "run_sequence_sweep", "study_function", "variant_at_best_lr",
    ),
    "sequential.boundary": (
        "BoundaryStudy", "boundary_curve", "boundary_interference", "boundary_reversion",
        "run_boundary_study",
    ),
    "sequential.transfer_figures": (
        "MODE_COLORS", "cosine_grid", "divergence_dashboard", "mark_diverged", "mode_label",
        "moving_average", "plot_layers", "plot_seen", "realign_curves", "shock_bars", "table1",
        "transfer_dashboard",
    ),
    "sequential.optimizer_figures": (
        "OPTIMIZER_COLORS", "TRAIN_LABELS", "boundary_traces", "loss_heatmap", "lr_curves",
        "sequence_dashboard", "since_curves", "sweep_lines", "table3", "task_curves",
        "variant_bars", "variant_label",
    ),
    "book.glue": ("glue", "glue_sweep_seeds", "glued_values", "in_colab"),
    "book.claims": ("check_verdicts", "evaluate_claims", "load_claims", "verdict_counts"),
    "book.widgets": ("panel",),
    "book.tables": (
        "execution_records", "status_html", "status_table", "timing_table", "verdict_count_table",
    ),
    "launch": ("experiments", "load_sweep", "make_executor", "run_sweep"),
}  # fmt: skip

_WHERE = {name: module for module, names in API.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    """Load a public name (or a submodule, ``cl.cyclic``) on first use."""
    if name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value  # later lookups skip this function
        return value
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
