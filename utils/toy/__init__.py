"""Build-only code: how the shipped toy models are made and measured. Learners never import it.

    python -m utils.toy.train      # retrain the toy models from the toy world (88 minutes recorded on 2 CPU cores)
    python -m utils.toy.evaluate   # measure them; `--json utils/weights/evaluation.json` records the numbers
    python -m utils.toy.cards      # rewrite the model cards from those records

`utils.toy.bars` holds the quality bars that the evaluation, the cards and the tests read.
"""
