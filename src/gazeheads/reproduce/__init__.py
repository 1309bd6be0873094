"""`gazeheads reproduce`: the paper's protocol at the paper's sizes, and its plan without weights.

* :mod:`paper` - the published figures and sizes; :mod:`plan` - the run decided from a config
  (data, K, protocols) before anything loads; :mod:`facts` - config, processor and parameter
  counts without weights; :mod:`estimate`, :mod:`gpus` - token counts and the GPU time and memory
  model; :mod:`dryrun` - `--dry-run`; :mod:`run` - the run itself; :mod:`compare`, :mod:`report` -
  paper vs measured. See docs/reproducing.md.
"""
