"""Label tables and label conversions of the DG benchmarks (`docs/data-protocol.md`).

Every conversion is a pure function on numpy arrays; nothing here touches the file system
except the explicit loaders (`read_label`, `load_ade847_label`, `load_mapillary_config`).

Label conventions after conversion ("trainId" maps):
- 19 Cityscapes classes (GTA5, Cityscapes, BDD100K, Mapillary, ACDC): 0..18, 255 = ignore.
- DELIVER: 0..24, 255 = ignore.   ADE20K-150: 0..149, 255 = ignore.   COCO-Stuff: 0..170, 255 = ignore.
- ADE20K-847: 0..846, **65535** = ignore, always uint16 (ids > 255 exist, never cast to 8 bits).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import LabelValueError

try:  # the official Cityscapes label table (pure Python, no heavy imports)
    from cityscapesscripts.helpers.labels import labels as _CS_LABELS
except ImportError as exc:  # pragma: no cover - exercised only without the package
    raise ImportError(
        "dgss.data needs the Cityscapes label table from `cityscapesscripts` (pip install cityscapesscripts)"
    ) from exc

IGNORE_INDEX = 255
ADE847_IGNORE_INDEX = 65535

# --------------------------------------------------------------------------------------------
# Cityscapes (and GTA5, which uses the same label ids)
# --------------------------------------------------------------------------------------------
CITYSCAPES_CLASSES: tuple[str, ...] = tuple(
    lab.name for lab in sorted((l for l in _CS_LABELS if 0 <= l.trainId < 19), key=lambda l: l.trainId)
)
"""The 19 evaluated classes in trainId order, from cityscapesscripts' table."""

CITYSCAPES_ID_TO_TRAINID: np.ndarray = np.full(256, IGNORE_INDEX, dtype=np.uint8)
"""uint8 (256,) lookup table: Cityscapes/GTA5 label id -> trainId (every other id -> 255)."""
for _lab in _CS_LABELS:
    if 0 <= _lab.id < 256 and 0 <= _lab.trainId < 19:
        CITYSCAPES_ID_TO_TRAINID[_lab.id] = _lab.trainId
CITYSCAPES_ID_TO_TRAINID.setflags(write=False)


def _bad_values(label: np.ndarray, allowed_max: int, extra: tuple[int, ...]) -> np.ndarray:
    """Sorted unique values of `label` that are > allowed_max and not in `extra`."""
    mask = label > allowed_max
    for v in extra:
        mask &= label != v
    return np.unique(label[mask]) if mask.any() else np.empty(0, dtype=label.dtype)


def cityscapes_ids_to_trainids(label_ids: np.ndarray) -> np.ndarray:
    """(H,W) Cityscapes/GTA5 label ids (uint8) -> (H,W) uint8 trainIds, 255 = ignore."""
    if label_ids.ndim != 2:
        raise LabelValueError(f"expected a single-channel (H,W) id map, got shape {label_ids.shape}", [])
    if label_ids.dtype != np.uint8:
        bad = np.unique(label_ids[(label_ids < 0) | (label_ids > 255)])
        if bad.size:
            raise LabelValueError(f"label ids outside 0..255: {bad[:10].tolist()}", bad)
        label_ids = label_ids.astype(np.uint8)
    return CITYSCAPES_ID_TO_TRAINID[label_ids]


# --------------------------------------------------------------------------------------------
# Mapillary Vistas v1.2 -> 19 classes (rule set of the openseg converter, docs/data-protocol.md)
# --------------------------------------------------------------------------------------------
_CS_NAMES_NOSPACE = {name.replace(" ", ""): i for i, name in enumerate(CITYSCAPES_CLASSES)}
_MAPILLARY_RULES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("trafficsign", "front", "back"), "traffic sign"),
    (("onrail",), "train"),
    (("cyclist", "rider"), "rider"),
    (("pole", "streetlight"), "pole"),
    (("curb", "pedestrianarea"), "sidewalk"),
    (("crosswalkplain", "parking", "bikelane", "servicelane", "lanemarking"), "road"),
)


def mapillary_name_to_trainid(readable: str) -> int:
    """Cityscapes trainId (or 255) of one Mapillary label from its `readable` name.

    The name is lower-cased with spaces and "-" removed; then, first match wins: an exact
    Cityscapes class name (without spaces); "trafficsign"/"front"/"back" -> traffic sign;
    "onrail" -> train; "cyclist"/"rider" -> rider; "pole"/"streetlight" -> pole;
    "curb"/"pedestrianarea" -> sidewalk; "crosswalkplain"/"parking"/"bikelane"/"servicelane"/
    "lanemarking" -> road; otherwise 255.
    """
    key = readable.lower().replace(" ", "").replace("-", "")
    if key in _CS_NAMES_NOSPACE:
        return _CS_NAMES_NOSPACE[key]
    for needles, target in _MAPILLARY_RULES:
        if any(n in key for n in needles):
            return CITYSCAPES_CLASSES.index(target)
    return IGNORE_INDEX


def load_mapillary_config(path: str | Path) -> list[dict]:
    """The `labels` list of a Mapillary `config_v1.2.json` (66 entries for v1.2)."""
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    labels = cfg["labels"] if isinstance(cfg, Mapping) else cfg
    if not labels or not all("readable" in lab for lab in labels):
        raise ValueError(f"{path}: not a Mapillary config (needs a 'labels' list with 'readable' names)")
    return list(labels)


def mapillary_lut(labels: Sequence[Mapping]) -> np.ndarray:
    """uint8 (256,) lookup: Mapillary label index (position in `labels`) -> trainId.

    Indices beyond the config map to 255; `check` reports such values as label errors.
    """
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for i, lab in enumerate(labels):
        lut[i] = mapillary_name_to_trainid(lab["readable"])
    return lut


def mapillary_to_trainids(label: np.ndarray, labels: Sequence[Mapping]) -> np.ndarray:
    """(H,W) Mapillary indices (palette PNG) or (H,W,3) colour labels -> (H,W) uint8 trainIds."""
    if label.ndim == 3:  # colour-coded labels: look colours up in the config
        codes = (label[..., 0].astype(np.int64) << 16) | (label[..., 1].astype(np.int64) << 8) | label[..., 2]
        index = np.full(codes.shape, -1, dtype=np.int64)
        for i, lab in enumerate(labels):
            r, g, b = lab["color"][:3]
            index[codes == ((r << 16) | (g << 8) | b)] = i
        if (index < 0).any():
            bad = np.unique(codes[index < 0])[:5]
            raise LabelValueError(f"label colours not in the Mapillary config: {[f'#{int(c):06x}' for c in bad]}", bad)
        label = index
    bad = _bad_values(label, len(labels) - 1, ())
    if bad.size:
        raise LabelValueError(
            f"Mapillary label indices beyond the {len(labels)}-entry config: {bad[:10].tolist()}", bad
        )
    return mapillary_lut(labels)[label.astype(np.intp)]


# --------------------------------------------------------------------------------------------
# DELIVER (25 classes)
# --------------------------------------------------------------------------------------------
DELIVER_CLASSES: tuple[str, ...] = (
    "Building",
    "Fence",
    "Other",
    "Pedestrian",
    "Pole",
    "RoadLine",
    "Road",
    "SideWalk",
    "Vegetation",
    "Cars",
    "Wall",
    "TrafficSign",
    "Sky",
    "Ground",
    "Bridge",
    "RailTrack",
    "GroundRail",
    "TrafficLight",
    "Static",
    "Dynamic",
    "Water",
    "Terrain",
    "TwoWheeler",
    "Bus",
    "Truck",
)

_DELIVER_LUT = np.full(256, IGNORE_INDEX, dtype=np.uint8)
_DELIVER_LUT[1:26] = np.arange(25, dtype=np.uint8)


def deliver_to_trainids(label: np.ndarray) -> np.ndarray:
    """DELIVER `_semantic_front.png` -> (H,W) uint8 trainIds.

    Like the official loader: channel 0 if the PNG has several; 1..25 -> 0..24; 0 (unlabelled)
    and 255 -> 255. Any other value raises `LabelValueError` (it is not a DELIVER label).
    """
    if label.ndim == 3:
        label = label[..., 0]
    bad = _bad_values(label, 25, (255,))
    if bad.size:
        raise LabelValueError(f"DELIVER label values outside 0..25/255: {bad[:10].tolist()}", bad)
    return _DELIVER_LUT[label.astype(np.intp)]


# --------------------------------------------------------------------------------------------
# ADE20K-150 and ADE20K-847
# --------------------------------------------------------------------------------------------
def ade150_to_trainids(label: np.ndarray) -> np.ndarray:
    """ADE20K-150 PNG (0 = other, 1..150) -> (H,W) uint8: v-1, and 0 -> 255."""
    bad = _bad_values(label, 150, ())
    if bad.size:
        raise LabelValueError(f"ADE20K-150 label values outside 0..150: {bad[:10].tolist()}", bad)
    out = label.astype(np.int16) - 1
    out[out < 0] = IGNORE_INDEX
    return out.astype(np.uint8)


# --------------------------------------------------------------------------------------------
# COCO-Stuff 164k (stuffthingmaps: 0-based ids 0..181, 255 = unlabeled) -> 171 classes
# --------------------------------------------------------------------------------------------
COCO_STUFF_UNUSED_IDS: tuple[int, ...] = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)
"""The 11 of the 182 stuffthingmaps ids (0-based = COCO category id - 1) that no class uses: COCO's
thing ids 12, 26, 29, 30, 45, 66, 68, 69, 71, 83 and 91 (1-based) were never annotated."""

COCO_STUFF_ID_TO_TRAINID: np.ndarray = np.full(256, IGNORE_INDEX, dtype=np.uint8)
"""uint8 (256,) lookup table: the 171 used ids in increasing order -> 0..170; unused ids and 255 -> 255."""
_COCO_STUFF_USED_IDS = [i for i in range(182) if i not in COCO_STUFF_UNUSED_IDS]
COCO_STUFF_ID_TO_TRAINID[_COCO_STUFF_USED_IDS] = np.arange(171, dtype=np.uint8)
COCO_STUFF_ID_TO_TRAINID.setflags(write=False)


def coco_stuff_to_trainids(label: np.ndarray) -> np.ndarray:
    """COCO-Stuff stuffthingmaps PNG (ids 0..181, 255 = unlabeled) -> (H,W) uint8 classes 0..170, 255 = ignore.

    The 11 unused ids map to 255; a value in 182..254 (or above 255) is not a stuffthingmaps id and raises
    `LabelValueError`.
    """
    bad = _bad_values(label, 181, (IGNORE_INDEX,))
    if bad.size:
        raise LabelValueError(f"COCO-Stuff label values outside 0..181/255: {bad[:10].tolist()}", bad)
    return COCO_STUFF_ID_TO_TRAINID[label.astype(np.intp)]


def load_ade847_label(path: str | Path) -> np.ndarray:
    """Read an ADE20K-847 (detectron2-style) 16-bit TIFF label -> (H,W) uint16.

    Values 0..846 are classes, 65535 is ignore. The file must be 16 bit: an 8-bit file cannot hold
    the ids above 255 nor the ignore value, so it is rejected instead of silently misread.
    """
    with Image.open(path) as im:
        mode = im.mode
        if mode not in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
            raise LabelValueError(
                f"{path}: ADE20K-847 labels must be 16-bit (found PIL mode {mode!r}); "
                "ids above 255 and the ignore value 65535 do not fit in 8 bits",
                [],
            )
        arr = np.asarray(im)
    if arr.dtype != np.uint16:  # mode "I" (int32): check the range before narrowing
        if arr.min() < 0 or arr.max() > 65535:
            raise LabelValueError(f"{path}: values outside uint16", [])
        arr = arr.astype(np.uint16)
    return np.ascontiguousarray(arr)


def check_ade847(label: np.ndarray) -> np.ndarray:
    """Validate an ADE-847 label (values 0..846 or 65535); returns it unchanged (uint16)."""
    bad = _bad_values(label, 846, (ADE847_IGNORE_INDEX,))
    if bad.size:
        raise LabelValueError(f"ADE20K-847 label values outside 0..846/65535: {bad[:10].tolist()}", bad)
    return label


def ade_full_seg_to_class_mask(seg_rgb: np.ndarray) -> np.ndarray:
    """ADE20K_2021_17_01 `*_seg.png` (H,W,3) -> (H,W) int32 object-class ids: R/10*256 + G."""
    r = seg_rgb[..., 0].astype(np.int32)
    g = seg_rgb[..., 1].astype(np.int32)
    return (r // 10) * 256 + g


# ADE20K_2021_17_01 object-class id of each of the 847 classes, in trainId order (row k holds
# trainIds 10k..10k+9). Source: MaskFormer/Mask2Former `ADE20K_SEM_SEG_FULL_CATEGORIES` "id" fields,
# the table their `prepare_ade20k_full_sem_seg.py` uses (class names = vocabularies/ade847.json).
ADE847_FULL_IDS: tuple[int, ...] = (
    2978,
    312,
    2420,
    2855,
    2131,
    976,
    447,
    165,
    2377,
    838,
    350,
    1831,
    1125,
    3055,
    401,
    1610,
    1910,
    2684,
    471,
    687,
    774,
    2473,
    2264,
    1735,
    2994,
    1564,
    1276,
    2178,
    2329,
    57,
    907,
    913,
    1395,
    2138,
    2272,
    2128,
    724,
    155,
    2053,
    2380,
    689,
    1788,
    3087,
    2530,
    581,
    2388,
    2985,
    2454,
    2096,
    137,
    294,
    212,
    2185,
    524,
    2212,
    943,
    1869,
    2251,
    2793,
    2423,
    1121,
    266,
    1948,
    1744,
    783,
    571,
    627,
    629,
    491,
    1374,
    223,
    3016,
    2598,
    978,
    239,
    608,
    236,
    2531,
    2616,
    591,
    327,
    2679,
    1451,
    181,
    420,
    2821,
    1023,
    855,
    2733,
    2928,
    1240,
    77,
    1969,
    2880,
    14,
    1936,
    2828,
    631,
    103,
    3144,
    308,
    1282,
    38,
    1563,
    29,
    480,
    2569,
    247,
    187,
    778,
    2243,
    1941,
    2833,
    120,
    95,
    2836,
    1087,
    868,
    1401,
    220,
    47,
    843,
    123,
    2537,
    1927,
    2337,
    1702,
    64,
    249,
    642,
    1981,
    609,
    2840,
    2586,
    1393,
    2704,
    1304,
    146,
    1494,
    2739,
    389,
    1551,
    131,
    738,
    161,
    747,
    1919,
    3109,
    2179,
    2989,
    206,
    1930,
    1002,
    2254,
    1708,
    2526,
    160,
    2901,
    2262,
    44,
    597,
    2235,
    1260,
    682,
    2151,
    3107,
    432,
    1098,
    2932,
    461,
    410,
    2046,
    533,
    1481,
    1858,
    894,
    1322,
    1891,
    1756,
    49,
    1272,
    1229,
    2850,
    1784,
    2962,
    259,
    319,
    954,
    1974,
    1013,
    2356,
    97,
    318,
    592,
    2885,
    1017,
    851,
    1407,
    1332,
    303,
    2714,
    1924,
    1346,
    1081,
    1583,
    2727,
    2509,
    2123,
    602,
    202,
    10,
    490,
    530,
    2213,
    1884,
    2934,
    2687,
    387,
    2668,
    982,
    2547,
    1474,
    877,
    1391,
    414,
    698,
    2019,
    2422,
    3010,
    1139,
    753,
    1747,
    2175,
    1301,
    1033,
    1789,
    2939,
    2730,
    1652,
    90,
    1349,
    2830,
    1485,
    2370,
    2155,
    118,
    1402,
    1957,
    3130,
    1197,
    52,
    2688,
    96,
    762,
    772,
    1857,
    2315,
    1016,
    643,
    3105,
    1849,
    791,
    349,
    6,
    3114,
    1587,
    1233,
    559,
    1223,
    3049,
    1943,
    853,
    709,
    1390,
    2748,
    2007,
    1546,
    1513,
    2600,
    2538,
    1790,
    194,
    326,
    2877,
    594,
    2036,
    1662,
    2366,
    1754,
    418,
    2553,
    1951,
    1963,
    918,
    2086,
    997,
    2731,
    704,
    1365,
    569,
    3108,
    948,
    839,
    63,
    1305,
    378,
    2362,
    2734,
    2982,
    2398,
    1119,
    382,
    1141,
    1805,
    3102,
    2341,
    1131,
    2316,
    2626,
    3104,
    198,
    1896,
    2800,
    190,
    3131,
    1463,
    357,
    929,
    209,
    912,
    1164,
    1509,
    2539,
    3116,
    2615,
    1644,
    818,
    242,
    2217,
    2347,
    2686,
    2300,
    572,
    789,
    358,
    2443,
    101,
    2969,
    2692,
    606,
    2339,
    1533,
    2060,
    1782,
    495,
    371,
    2707,
    889,
    3156,
    2683,
    1499,
    1135,
    1619,
    125,
    2838,
    2792,
    1695,
    746,
    1343,
    1370,
    2858,
    145,
    2565,
    1892,
    1103,
    286,
    170,
    3073,
    922,
    1655,
    1602,
    2160,
    1151,
    2176,
    2239,
    132,
    394,
    1424,
    607,
    700,
    116,
    1425,
    2676,
    141,
    2360,
    2449,
    897,
    317,
    2228,
    2351,
    1543,
    656,
    1088,
    373,
    2472,
    2892,
    1740,
    3067,
    1367,
    188,
    79,
    1633,
    1885,
    677,
    1779,
    1297,
    2334,
    3027,
    2735,
    1791,
    2405,
    1748,
    2983,
    3035,
    2824,
    2168,
    385,
    2148,
    2465,
    175,
    390,
    268,
    2722,
    2857,
    3088,
    2926,
    2782,
    1378,
    1934,
    2072,
    2889,
    944,
    1158,
    1383,
    867,
    2145,
    1915,
    361,
    402,
    482,
    2761,
    300,
    1554,
    636,
    260,
    1186,
    871,
    2859,
    2103,
    208,
    2236,
    2012,
    2462,
    1462,
    2832,
    2617,
    1024,
    1129,
    18,
    376,
    134,
    407,
    434,
    2017,
    2717,
    2005,
    2993,
    1545,
    1445,
    2831,
    1161,
    2411,
    2949,
    1769,
    552,
    2327,
    939,
    3013,
    1986,
    1486,
    2723,
    1549,
    2649,
    1020,
    392,
    422,
    1419,
    2099,
    2464,
    3058,
    430,
    675,
    2941,
    2955,
    2355,
    840,
    32,
    2338,
    1232,
    2834,
    2991,
    2879,
    444,
    1657,
    2246,
    296,
    245,
    2661,
    1202,
    1714,
    251,
    1095,
    1828,
    311,
    2732,
    947,
    2115,
    2738,
    2525,
    2194,
    634,
    740,
    2682,
    2020,
    1156,
    1036,
    1295,
    1181,
    3037,
    1614,
    736,
    893,
    2047,
    1274,
    1361,
    3036,
    2606,
    2797,
    2022,
    2876,
    2758,
    472,
    3028,
    882,
    1189,
    743,
    3122,
    2401,
    468,
    1061,
    1523,
    3059,
    2843,
    2853,
    1529,
    214,
    3032,
    3071,
    277,
    813,
    426,
    1039,
    727,
    1508,
    2490,
    2299,
    768,
    1172,
    537,
    1847,
    1664,
    1110,
    1014,
    662,
    121,
    227,
    2410,
    2165,
    2696,
    3005,
    1231,
    635,
    292,
    2690,
    65,
    2607,
    2574,
    1188,
    456,
    2913,
    459,
    1955,
    827,
    1111,
    2412,
    2997,
    528,
    366,
    1863,
    500,
    1001,
    1958,
    1441,
    809,
    210,
    435,
    718,
    1674,
    388,
    1572,
    1584,
    1944,
    674,
    99,
    2352,
    1019,
    1763,
    185,
    554,
    1066,
    2508,
    951,
    2822,
    415,
    297,
    1914,
    2619,
    1338,
    2505,
    955,
    2786,
    238,
    3000,
    2763,
    299,
    822,
    1288,
    3101,
    2894,
    992,
    489,
    2157,
    2309,
    1576,
    1810,
    2964,
    2662,
    2087,
    1569,
    503,
    1505,
    1468,
    1613,
    1138,
    1256,
    2715,
    2846,
    477,
    2576,
    108,
    2245,
    1162,
    2149,
    2183,
    858,
    1324,
    1055,
    1741,
    149,
    615,
    825,
    2143,
    304,
    283,
    2322,
    3017,
    2510,
    1960,
    265,
    2282,
    2184,
    1461,
    3113,
    2372,
    2166,
    232,
    693,
    1945,
    3039,
    2494,
    1908,
    2827,
    280,
    2950,
    1044,
    288,
    2863,
    1342,
    2409,
    1258,
    2249,
    2862,
    920,
    1607,
    2802,
    610,
    3129,
    1108,
    2823,
    476,
    2641,
    2788,
    2070,
    1368,
    2903,
    699,
    2844,
    942,
    2663,
    457,
    2701,
    2540,
    2231,
    2746,
    1738,
    2350,
    2808,
    2025,
    2541,
    2156,
    126,
    2512,
    831,
    2503,
    2039,
    2774,
    886,
    919,
    2240,
    2636,
    963,
    1218,
    1406,
    1420,
    526,
    2639,
    975,
    1921,
    2305,
    1193,
    2517,
    2809,
    1647,
    314,
    2560,
    545,
    1345,
    775,
    603,
    1163,
    1641,
    1678,
    2450,
    2915,
    42,
    2242,
    2741,
    1143,
    862,
    1654,
    1826,
    1689,
    3124,
    2710,
    152,
    549,
    360,
    1982,
    1478,
    2203,
    2612,
    2956,
    2681,
    437,
    2171,
    1933,
    3110,
    1824,
    2803,
    234,
    764,
    177,
    817,
    3145,
    1262,
    864,
    2359,
    2992,
    1725,
    2667,
    2484,
    1133,
    1667,
    2847,
    932,
    1392,
    2573,
    2140,
    1046,
    264,
    2927,
    2752,
    679,
    2493,
    1658,
    2466,
    1057,
    2444,
    2093,
    2248,
    2432,
    726,
    816,
    1171,
    2766,
    2900,
    2313,
    488,
    2265,
    2043,
    332,
    1771,
    2320,
    2646,
    1089,
    2826,
    3148,
)
assert len(ADE847_FULL_IDS) == 847 and len(set(ADE847_FULL_IDS)) == 847


def ade847_lut(max_id: int = 4096) -> np.ndarray:
    """uint16 (max_id,) lookup: ADE20K_2021 object-class id -> 847-class trainId (else 65535)."""
    lut = np.full(max_id, ADE847_IGNORE_INDEX, dtype=np.uint16)
    lut[np.asarray(ADE847_FULL_IDS)] = np.arange(847, dtype=np.uint16)
    return lut


def ade_full_class_mask_to_trainids(class_mask: np.ndarray) -> np.ndarray:
    """(H,W) int ADE20K_2021 object-class ids -> (H,W) uint16 847-class trainIds (65535 = ignore)."""
    lut = ade847_lut(max(4096, int(class_mask.max()) + 1))
    return lut[class_mask.astype(np.intp)]


# --------------------------------------------------------------------------------------------
# Generic label reading
# --------------------------------------------------------------------------------------------
def read_label(path: str | Path) -> np.ndarray:
    """Read a label image as stored, without any cast: (H,W) uint8/uint16 or (H,W,C) uint8.

    Palette ("P") PNGs give their indices, 16-bit PNG/TIFF stay uint16.
    """
    with Image.open(path) as im:
        if im.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
            return np.array(im, dtype=np.uint16)
        if im.mode in ("L", "P", "RGB", "RGBA"):
            return np.array(im)
        if im.mode == "I":
            arr = np.array(im)
            if arr.min() < 0 or arr.max() > 65535:
                raise LabelValueError(f"{path}: 32-bit label values outside 0..65535", [])
            return arr.astype(np.uint16)
        raise LabelValueError(f"{path}: unsupported label image mode {im.mode!r}", [])
