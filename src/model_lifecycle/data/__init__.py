"""Image sources, conversion and stratified splits (no Kedro in here).

Kept free of imports: decoding worker processes import ``data.convert`` only.
"""
