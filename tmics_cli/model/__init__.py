"""The TMICS model: search-space operations, cells, alignment, GARS, AAS, networks, weight files."""

from .aas import AttentionAveraging
from .align import (
    FLOW_ESTIMATORS,
    DISFlow,
    MixedAlign,
    OpticalFlowAlign,
    PyramidFlowNet,
    TemporalGroupingAlign,
    align_frames,
    backward_warp,
    estimate_flows,
)
from .cell import Cell, MixedLayer
from .device_flow import PatchInverseSearchFlow
from .gars import AuxiliaryRainStreaks
from .genotypes import (
    ALIGNMENTS,
    GENOTYPES,
    PRESET_GENOTYPES,
    Genotype,
    GenotypeError,
    genotype_from_architecture,
    get_genotype,
)
from .io import WeightsError, average_models, load_model, read_metadata, save_model
from .network import (
    SIZES,
    TMICS,
    ModelConfig,
    RestorationNetwork,
    TMICSOutput,
    build_model,
    change_scale,
    model_config,
)
from .ops import OPERATION_NAMES, OPERATIONS, build_operation

__all__ = [
    "ALIGNMENTS",
    "FLOW_ESTIMATORS",
    "GENOTYPES",
    "OPERATIONS",
    "OPERATION_NAMES",
    "PRESET_GENOTYPES",
    "SIZES",
    "TMICS",
    "AttentionAveraging",
    "AuxiliaryRainStreaks",
    "Cell",
    "DISFlow",
    "Genotype",
    "GenotypeError",
    "MixedAlign",
    "MixedLayer",
    "ModelConfig",
    "OpticalFlowAlign",
    "PatchInverseSearchFlow",
    "PyramidFlowNet",
    "RestorationNetwork",
    "TMICSOutput",
    "TemporalGroupingAlign",
    "WeightsError",
    "align_frames",
    "average_models",
    "backward_warp",
    "build_model",
    "build_operation",
    "change_scale",
    "estimate_flows",
    "genotype_from_architecture",
    "get_genotype",
    "load_model",
    "model_config",
    "read_metadata",
    "save_model",
]
