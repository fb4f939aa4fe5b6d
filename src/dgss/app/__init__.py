"""`dgss app`: a local web page over the same functions as `dgss predict` (Gradio)."""
