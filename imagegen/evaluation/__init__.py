"""imagegen.evaluation: the Shapes scorer, the evaluation runner and Fréchet distances.

    from imagegen.evaluation import score
    result = score(image, spec)   # result.passed, result.checks, result.reason
    evaluation = evaluate_pipeline(pipe, load_records(["single.jsonl"]))   # GenEval-style pass rates
    frechet_distance(features_a, features_b)   # FD-shapes / FD-emoji features: feature_net.py

Importing this package does not import torch (feature_net.py does, when used).
"""

from imagegen.evaluation.fd import (
    FrechetScorer,
    frechet_distance,
    inception_status,
    kernel_distance,
    render_references,
)
from imagegen.evaluation.runner import (
    Evaluation,
    PromptRecord,
    SamplingSettings,
    evaluate_folder,
    evaluate_pipeline,
    load_records,
    suite_files,
    summarize,
    wilson_interval,
    write_outputs,
)
from imagegen.evaluation.scorer import (
    Detection,
    ScoreResult,
    detect,
    detections_from_spec,
    relations_between,
    score,
    score_detections,
    single_object_accuracy,
)

__all__ = [
    "Detection",
    "Evaluation",
    "FrechetScorer",
    "PromptRecord",
    "SamplingSettings",
    "evaluate_folder",
    "evaluate_pipeline",
    "frechet_distance",
    "inception_status",
    "kernel_distance",
    "load_records",
    "render_references",
    "suite_files",
    "summarize",
    "wilson_interval",
    "write_outputs",
    "ScoreResult",
    "detect",
    "detections_from_spec",
    "relations_between",
    "score",
    "score_detections",
    "single_object_accuracy",
]
