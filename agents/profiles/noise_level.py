"""NoiseLevelObserved (dataModel.Environment): sound levels in decibels (UN/CEFACT 2N)."""

from agents.profiles.measurement import Measurement as M
from agents.profiles.measurement import Profile

DB = "2N"

PROFILE = Profile(
    model="NoiseLevelObserved",
    subject="dataModel.Environment",
    measurements=(
        M("laeq", "LAeq", DB, aliases=("leq", "noise", "LAEQ"), controlled_property="noiseLevel"),
        M("lamax", "LAmax", DB, aliases=("lmax",), controlled_property="noiseLevel"),
        M("las", "LAS", DB, controlled_property="noiseLevel"),
        M("laeq_d", "LAeq_d", DB, aliases=("lday", "ld"), controlled_property="noiseLevel"),
    ),
    # required by NoiseLevelObserved_schema.json ("required": [..., "dateObservedFrom", "dateObservedTo", ...])
    period=("dateObservedFrom", "dateObservedTo"),
)
