"""The training loop, its checkpoints and its recipes."""


from unetkit.api import make_module_callable  # noqa: E402 (after the module's own names)

make_module_callable(__name__, "train")  # `unetkit.train(...)` is the API function (api.py)
