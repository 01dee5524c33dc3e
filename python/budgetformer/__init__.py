"""budgetformer: BudgetFormer models trained by the budgetformer C program, in PyTorch.

    import budgetformer
    model = budgetformer.load("runs/wordnet-pos/checkpoints/step-00003000.h5")   # a torch.nn.Module, eval mode
    model.tokenizer.encode("move quickly on foot")       # the ids prepare and predict give
    model.predict(["move quickly on foot"])              # [{"label", "class", "probability", "budget", "heads"}]
    out = model(tokens, lengths)                         # logits, budget, head_mask, khat
    model.save("finetuned.h5")                           # budgetformer eval / predict / train --resume accept it
    logs = budgetformer.read_log("runs/wordnet-pos/log.h5")       # {"metrics": DataFrame, "heads": ..., ...}
    rec = budgetformer.read_records("test-records.h5", data="data/wordnet-pos/test.h5")

Needs Debian's /usr/bin/python3 with python3-torch, python3-h5py, python3-numpy and python3-pandas (pandas
only for read_log and read_records). The model is docs/MODEL.md; budgetformer/model.py holds all of it.
"""
from .model import OPTIONS, BudgetFormer, load  # noqa: F401
from .tokenizer import Tokenizer  # noqa: F401

__version__ = "0.1.0"


def read_log(path):
    """See budgetformer.logs.read_log."""
    from .logs import read_log as f
    return f(path)


def read_records(path, data=None):
    """See budgetformer.logs.read_records."""
    from .logs import read_records as f
    return f(path, data)
