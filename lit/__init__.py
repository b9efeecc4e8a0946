"""lit: compress deep networks with LIT (Learned Intermediate representation Training)."""

__version__ = "0.1.0"
