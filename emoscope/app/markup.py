"""The one way a page puts HTML on the screen: ``show_html`` over ``emoscope.render``'s output.

Pages never call ``st.html`` or ``st.markdown(unsafe_allow_html=True)`` themselves (a test
greps for it); they build markup with ``emoscope.render`` (which escapes every piece of user
text) and hand it here. ``st.html`` is the one Streamlit call used: it also sanitises what it
is given (DOMPurify) and takes ``<style>`` blocks without leaving an empty element behind.
"""

from __future__ import annotations

import streamlit as st

from emoscope.render import SafeHtml


def show_html(markup: SafeHtml) -> None:
    """Put markup from ``emoscope.render`` on the page; any other string is refused."""
    if not isinstance(markup, SafeHtml):
        raise TypeError("show_html takes markup from emoscope.render (text_html, render_html, INPUT_BIDI_CSS), "
                        f"not a plain {type(markup).__name__}")
    st.html(str(markup))
