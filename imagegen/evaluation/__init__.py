"""imagegen.evaluation: the Shapes scorer (GenEval-style checks of a spec against an image).

    from imagegen.evaluation import score
    result = score(image, spec)   # result.passed, result.checks, result.reason
"""

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
    "ScoreResult",
    "detect",
    "detections_from_spec",
    "relations_between",
    "score",
    "score_detections",
    "single_object_accuracy",
]
