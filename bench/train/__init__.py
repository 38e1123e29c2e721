"""One run: its specification and identity (``spec``), settings (``settings``), compiled step
functions (``steps``), batches and evaluation (``feed``), the one training loop (``loop``), the
measured run (``run``) and the row it records (``record``)."""
