"""What the Streamlit pages share: cached state (``state``), the sidebar picker (``sidebar``),
the plotly figures (``charts``), and putting escaped HTML on a page (``markup``).

Kept light on purpose: importing this package imports nothing; ``charts`` and the plain
functions of ``sidebar`` work without Streamlit, while ``state`` and ``markup`` need it.
"""
