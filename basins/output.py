"""Writing outputs: atomic, deterministic (byte-identical on rerun), Chinese-safe.

Every writer builds the file next to its target and moves it into place at the
end, so a failure halfway leaves the previous output intact. GeoPackages get a
pinned timestamp, Excel workbooks fixed document dates and zip entry times, CSVs
are UTF-8 with a byte-order mark so Excel shows Chinese names correctly.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path

import geopandas as gpd
import pandas as pd

#: Timestamp written into GeoPackages and workbooks so reruns are byte-identical.
PINNED_TIME = "2000-01-01T00:00:00.000Z"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(suffix=suffix, prefix=".basins-", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _plain(df: pd.DataFrame) -> pd.DataFrame:
    """Columns a GeoPackage can hold: lists and dicts become text."""
    out = df.copy()
    for c in out.columns:
        if c == "geometry":
            continue
        if out[c].map(lambda v: isinstance(v, (list, tuple, set, dict))).any():
            out[c] = out[c].map(lambda v: "|".join(map(str, v))
                                if isinstance(v, (list, tuple, set)) else str(v))
    return out


def write_gpkg(layers: Mapping[str, pd.DataFrame], path: str | os.PathLike) -> Path:
    """Write several layers (GeoDataFrames, or DataFrames as attribute tables) to one GeoPackage."""
    import pyogrio

    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": PINNED_TIME})
    with atomic_path(path, ".gpkg") as tmp:
        for name, df in layers.items():
            if not isinstance(df, gpd.GeoDataFrame):
                df = gpd.GeoDataFrame(_plain(df), geometry=None)
            else:
                df = gpd.GeoDataFrame(_plain(df), geometry=df.geometry.name, crs=df.crs)
            df.to_file(tmp, layer=name, driver="GPKG")
    return Path(path)


def write_csv(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """CSV in UTF-8 with BOM (Excel opens Chinese text correctly), geometry as WKT."""
    if isinstance(df, gpd.GeoDataFrame):
        name = df.geometry.name
        wkt = df.geometry.to_wkt(rounding_precision=6)
        df = pd.DataFrame(df)
        df[name] = wkt
    with atomic_path(path, ".csv") as tmp:
        df.to_csv(tmp, index=False, encoding="utf-8-sig", lineterminator="\n")
    return Path(path)


def write_xlsx(sheets: Mapping[str, pd.DataFrame], path: str | os.PathLike) -> Path:
    """An Excel workbook, one sheet per table, byte-identical for identical tables."""
    buf = io.BytesIO()
    with pd.ExcelWriter(buf, engine="openpyxl") as xw:
        for name, df in sheets.items():
            if isinstance(df, gpd.GeoDataFrame):
                df = pd.DataFrame(df.drop(columns=df.geometry.name))
            _plain(df).to_excel(xw, sheet_name=name[:31], index=False)
        props = xw.book.properties
        props.created = props.modified = datetime(2000, 1, 1)
        props.creator = props.lastModifiedBy = "basins"
    # rezip with fixed entry times and order
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    with atomic_path(path, ".xlsx") as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                data = src.read(info.filename)
                if info.filename == "docProps/core.xml":  # openpyxl stamps the save time
                    data = re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*(<)",
                                  rb"\g<1>2000-01-01T00:00:00Z\g<2>", data)
                zi = zipfile.ZipInfo(info.filename, date_time=(2000, 1, 1, 0, 0, 0))
                zi.compress_type = zipfile.ZIP_DEFLATED
                zi.external_attr = 0o600 << 16
                dst.writestr(zi, data)
    return Path(path)
