"""gazeheads: discover, steer and track the gaze heads of vision-language models.

    import gazeheads as gh
    gm = gh.load()                                   # the bundled tiny Qwen3-VL
    strips = gh.data.resolve_comics("comics/")       # ROOT/<comic>/p1.png .. p6.png
    ranking = gh.discover(gm, strips)
    enc = gm.encode(strips[0], gh.prompts.NARRATION_QUESTION)
    with gh.steer(gm, ranking.top(100), gh.Panel(3), enc):
        print(gm.generate(enc, max_new_tokens=40))
    with gh.track(gm, ranking.top(10), enc) as tracker:
        gm.generate(enc, max_new_tokens=40)
    print(tracker.trace().focus())
"""

from . import data, prompts
from .discovery import discover, strip_matrices, strip_matrices_per_question
from .errors import DataError, GazeheadsError, HeadSelectionError, ModelError, RegionError
from .heads import HeadSet
from .model import Encoded, GazeModel, load
from .ranking import Ranking
from .regions import Box, Panel, Schedule
from .steering import steer
from .tracking import Trace, track

__version__ = "0.1.0"

__all__ = [
    "Box", "DataError", "Encoded", "GazeModel", "GazeheadsError", "HeadSelectionError", "HeadSet",
    "ModelError", "Panel", "Ranking", "RegionError", "Schedule", "Trace", "data", "discover", "load",
    "prompts", "steer", "strip_matrices", "strip_matrices_per_question", "track",
]
