"""Location-free feature encoding: one example per vehicle, computed inside a force.

See ``schema`` for the feature lists and ``build.build_examples`` for how they are computed.
"""

from federation.features.build import DEFAULT_MAX_READS, build_examples, haversine_km
from federation.features.inputs import FeatureInputError
from federation.features.labels import align_labels
from federation.features.schema import (
    READ_FEATURES,
    ROAD_CLASSES,
    SUMMARY_FEATURES,
    ExampleSet,
    concat_examples,
)
from federation.features.split import split_examples

__all__ = [
    "DEFAULT_MAX_READS",
    "READ_FEATURES",
    "ROAD_CLASSES",
    "SUMMARY_FEATURES",
    "ExampleSet",
    "FeatureInputError",
    "align_labels",
    "build_examples",
    "concat_examples",
    "haversine_km",
    "split_examples",
]
