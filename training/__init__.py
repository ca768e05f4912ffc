"""Training the demo model, an offline tool: labeled folder in, ``save_pretrained`` directory out.

Not a worker role; it reuses the model worker's loading code to check what it saved.
"""
