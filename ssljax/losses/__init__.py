"""Pure loss functions, named and shaped as in METHODS.md."""
from ssljax.losses.contrastive import info_nce
from ssljax.losses.contrastive import l2_normalize
from ssljax.losses.contrastive import nt_xent
from ssljax.losses.contrastive import sigmoid_contrastive
from ssljax.losses.contrastive import supcon
