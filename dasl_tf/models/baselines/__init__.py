"""The paper's baselines (section 4.2), each a two-headed ``CrossDomainRanker``.

Importing this package registers their variants with :func:`dasl_tf.models.build_model`:

* ``din``: DIN, one independent model per domain;
* ``wide_deep``: Wide & Deep, one independent model per domain;
* ``conet``: CoNet, cross-connected networks of the two domains;
* ``ddtcdr``: DDTCDR, dual transfer through an orthogonal user mapping;
* ``minet``: MiNet, long-term and short-term source/target interests;
* ``pinet``: π-Net, shared-account filter and cross-domain transfer units.

and the baselines a practitioner tries first, fitted in one pass without
gradients (:data:`FITTED_BASELINES`):

* ``item_knn``/``item_knn_cross``: item-item cosine kNN over the own-domain /
  other-domain history;
* ``pop_item_knn``: ``item_knn`` plus popularity, the weight chosen on validation;
* ``recent_popularity``: clicks in a trailing window before the example's time.
"""
from dasl_tf.models.baselines.conet import CoNet
from dasl_tf.models.baselines.ddtcdr import DDTCDR
from dasl_tf.models.baselines.din import Din
from dasl_tf.models.baselines.item_knn import CrossDomainItemKnn, ItemKnn, PopItemKnn
from dasl_tf.models.baselines.minet import MiNet
from dasl_tf.models.baselines.pinet import PiNet
from dasl_tf.models.baselines.recent_popularity import RecentPopularity
from dasl_tf.models.baselines.sasrec import SasRec
from dasl_tf.models.baselines.wide_deep import WideAndDeep

BASELINES = ("din", "wide_deep", "conet", "ddtcdr", "minet", "pinet")
FITTED_BASELINES = ("item_knn", "item_knn_cross", "pop_item_knn", "recent_popularity")
