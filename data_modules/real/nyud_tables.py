"""NYU Depth v2 label mappings, as data: 894 raw classes -> 40 classes (Gupta et al.) -> 13 classes (Couprie et al.).

Sources:

* 894 -> 40: ``mapClass`` of ``classMapping40.mat`` released with S. Gupta, P. Arbelaez, J. Malik, "Perceptual
  Organization and Recognition of Indoor Scenes from RGB-D Images", CVPR 2013 (the "NYU-40" classes). Transcribed
  from two independent public copies of that vector, which agree entry for entry; ``tests/data_modules/real/test_nyud.py``
  checks the entries for classes whose raw name is unambiguous (wall, floor, cabinet, bed, chair, ...), that each
  named class 1-37 is the image of exactly one raw class, and a SHA-256 of the table.
* 40 -> 13: the 13-class protocol of C. Couprie et al., "Indoor Semantic Segmentation using depth information",
  ICLR 2013, as distributed in ``class13Mapping.mat`` (A. Handa, nyuv2-meta-data / SceneNet) and used by Eigen &
  Fergus (ICCV 2015) and the MTAN / LibMTL benchmarks (whose preprocessed labels are these 13 classes, 0-based,
  with -1 for unlabelled).

Raw label 0 in ``nyu_depth_v2_labeled.mat`` means unlabelled; it maps to ignore (255). All tables here are
1-based on both sides, exactly as the sources list them; the readers subtract 1 to get 0-based class indices.
"""

from __future__ import annotations

MAP_894_TO_40: tuple[int, ...] = (
    40, 40, 3, 22, 5, 40, 12, 38, 40, 40, 2, 39, 40, 40, 26, 40, 24, 40, 7, 40,  # ids 1-20
    1, 40, 40, 34, 38, 29, 40, 8, 40, 40, 40, 40, 38, 40, 40, 14, 40, 38, 40, 40,  # ids 21-40
    40, 15, 39, 40, 30, 40, 40, 39, 40, 39, 38, 40, 38, 40, 37, 40, 38, 38, 9, 40,  # ids 41-60
    40, 38, 40, 11, 38, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 38, 13,  # ids 61-80
    40, 40, 6, 40, 23, 40, 39, 10, 16, 40, 40, 40, 40, 38, 40, 40, 40, 40, 40, 40,  # ids 81-100
    40, 40, 40, 38, 40, 39, 40, 40, 40, 40, 39, 38, 40, 40, 40, 40, 40, 40, 18, 40,  # ids 101-120
    40, 19, 28, 33, 40, 40, 40, 40, 40, 40, 40, 40, 40, 38, 27, 36, 40, 40, 40, 40,  # ids 121-140
    21, 40, 20, 35, 40, 40, 40, 40, 40, 40, 40, 40, 38, 40, 40, 40, 4, 32, 40, 40,  # ids 141-160
    39, 40, 39, 40, 40, 40, 40, 40, 17, 40, 40, 25, 40, 39, 40, 40, 40, 40, 40, 40,  # ids 161-180
    40, 40, 39, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40,  # ids 181-200
    40, 40, 40, 39, 40, 40, 40, 40, 40, 40, 40, 40, 40, 39, 38, 38, 40, 40, 39, 40,  # ids 201-220
    39, 40, 38, 39, 38, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 39, 40, 38, 40, 40,  # ids 221-240
    38, 38, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 38, 40, 40, 40, 40,  # ids 241-260
    40, 39, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 39, 40, 40,  # ids 261-280
    40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 39, 40, 40, 40, 38, 40, 40, 39, 40, 40,  # ids 281-300
    38, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 39, 40, 40, 40, 40, 40, 40, 40,  # ids 301-320
    40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 31, 40, 40, 40, 40, 40, 40, 40, 38, 40,  # ids 321-340
    40, 38, 39, 39, 40, 40, 40, 40, 40, 40, 40, 40, 40, 38, 40, 39, 40, 40, 39, 40,  # ids 341-360
    40, 40, 38, 40, 40, 40, 40, 40, 40, 40, 40, 38, 39, 40, 40, 40, 40, 40, 40, 38,  # ids 361-380
    40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 38, 39, 40, 40, 40, 40, 40, 40, 40,  # ids 381-400
    39, 40, 40, 40, 40, 40, 40, 38, 40, 40, 40, 38, 40, 39, 40, 40, 40, 39, 39, 40,  # ids 401-420
    40, 40, 40, 40, 40, 40, 40, 40, 40, 39, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40,  # ids 421-440
    40, 40, 39, 39, 40, 40, 39, 39, 40, 40, 40, 40, 38, 40, 40, 38, 39, 39, 40, 39,  # ids 441-460
    40, 39, 38, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 39, 40, 38, 40, 39, 40,  # ids 461-480
    40, 40, 40, 40, 39, 39, 40, 40, 40, 40, 40, 40, 39, 39, 40, 40, 38, 39, 39, 40,  # ids 481-500
    40, 40, 40, 40, 40, 40, 40, 40, 39, 39, 40, 40, 40, 40, 39, 40, 40, 40, 40, 40,  # ids 501-520
    39, 40, 40, 39, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 39,  # ids 521-540
    38, 40, 40, 40, 40, 40, 40, 40, 39, 38, 39, 40, 38, 39, 40, 39, 40, 39, 40, 40,  # ids 541-560
    40, 40, 40, 40, 40, 40, 38, 40, 40, 40, 40, 40, 38, 40, 40, 39, 40, 40, 40, 39,  # ids 561-580
    40, 38, 40, 40, 40, 40, 40, 40, 40, 40, 38, 40, 40, 40, 40, 40, 40, 40, 40, 40,  # ids 581-600
    40, 40, 40, 40, 40, 40, 40, 39, 38, 40, 40, 38, 40, 40, 38, 40, 40, 40, 40, 40,  # ids 601-620
    40, 40, 40, 40, 39, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40,  # ids 621-640
    40, 38, 40, 40, 38, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 38, 38, 38, 40,  # ids 641-660
    40, 40, 38, 40, 40, 40, 38, 38, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40,  # ids 661-680
    40, 40, 40, 40, 40, 38, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 38,  # ids 681-700
    40, 38, 39, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40,  # ids 701-720
    40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 39, 40, 40, 40, 40, 40, 40,  # ids 721-740
    40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40,  # ids 741-760
    40, 40, 40, 40, 40, 40, 40, 40, 40, 39, 40, 39, 40, 40, 40, 40, 38, 38, 40, 40,  # ids 761-780
    40, 38, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 39, 40, 40, 39,  # ids 781-800
    40, 40, 39, 39, 40, 40, 40, 40, 40, 40, 40, 40, 39, 39, 39, 40, 40, 40, 40, 39,  # ids 801-820
    40, 40, 40, 40, 40, 40, 40, 40, 39, 40, 40, 40, 40, 40, 39, 40, 40, 40, 40, 40,  # ids 821-840
    40, 40, 40, 40, 40, 40, 40, 40, 40, 38, 40, 40, 40, 40, 40, 40, 40, 39, 40, 40,  # ids 841-860
    38, 40, 39, 40, 40, 40, 40, 38, 40, 40, 40, 40, 40, 38, 40, 40, 40, 40, 40, 40,  # ids 861-880
    40, 39, 40, 40, 40, 40, 40, 40, 40, 40, 40, 39, 40, 40,  # ids 881-894
)
"""``MAP_894_TO_40[raw_id - 1]`` is the 1-based NYU-40 class of raw NYU label ``raw_id`` (1..894)."""

CLASSES_40: tuple[str, ...] = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor mat",
    "clothes", "ceiling", "books", "refrigerator", "television", "paper", "towel", "shower curtain", "box", "whiteboard",
    "person", "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)
"""The NYU-40 class names, in order (class ``k`` is ``CLASSES_40[k - 1]``)."""

MAP_40_TO_13: tuple[int, ...] = (12, 5, 6, 1, 4, 9, 10, 12, 13, 6, 8, 6, 13, 10, 6, 13, 6, 7, 7, 5, 7, 3, 2, 6, 11, 7, 7, 7, 7, 7, 7, 6, 7, 7, 7, 7, 7, 7, 6, 7)
"""``MAP_40_TO_13[c40 - 1]`` is the 1-based 13-class index of NYU-40 class ``c40``."""

CLASSES_13: tuple[str, ...] = (
    "bed", "books", "ceiling", "chair", "floor", "furniture", "objects", "picture", "sofa", "table", "tv", "wall", "window",
)
"""The 13 class names, in order (class ``k`` is ``CLASSES_13[k - 1]``; 0-based index ``k - 1`` in samples)."""
