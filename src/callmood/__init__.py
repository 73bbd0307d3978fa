"""callmood: speech emotion recognition and call analytics, offline on a CPU."""

__version__ = "0.1.0"
