"""EmoScope: multi-label emotion classification for Arabic and English text.

The package holds everything importable and testable without Streamlit: data readers,
text normalisation, encoder sources, models, training, thresholds, metrics, bundles,
prediction and the command line.
"""

__version__ = "0.1.0"
