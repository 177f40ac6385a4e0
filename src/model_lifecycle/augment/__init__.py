"""Batched tensor augmentations and the policy that configures them (no Kedro in here).

``config`` (the validated policy) imports no torch, so parameter checks stay cheap;
``augmenter``, ``ops`` and ``auto`` hold the tensor code.
"""
