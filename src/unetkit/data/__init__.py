"""Reading, validating, normalising, sampling and augmenting image/label pairs."""


def __getattr__(name: str):
    """Import a submodule on first use (unetkit.data.validate.CheckReport in the API's annotations)."""
    from unetkit import submodule

    return submodule(__name__, name)
