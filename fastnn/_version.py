"""The single place fastnn's version is defined (read by setuptools too)."""

__version__ = "0.1.0"
