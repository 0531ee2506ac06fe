"""dragoman: encoder-decoder language models on PyTorch."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy, so `import dragoman` (and the CLI's --help) does not import torch.
    if name == "Translator":
        from dragoman.translator import Translator

        return Translator
    raise AttributeError(name)
