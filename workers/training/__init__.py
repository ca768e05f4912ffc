"""Training the demo model: labeled folder in, ``save_pretrained`` directory out.

Lives with the workers because it needs torch; the web process never imports it.
"""
