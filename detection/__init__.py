"""The detection library: the models, the detector and its thresholds, the scorer, explanations and
registry access, shared by the score worker (model_workers) and the API's POST /v1/score.

It imports the core (tickwatch) only.
"""
