"""A page to look at a run's recommendations and report (``cemg-ray ui RUN_DIR``).

``data`` is the one module that calls into ``cemg_ray.api.Run`` (ranking, codes, users); ``images`` serves the
catalog's pictures without leaving its folder; ``report`` reads the run's evaluation and training artifacts;
``app`` is the HTTP application (JSON endpoints and the static page under ``static/``); ``cli`` starts it.
"""
