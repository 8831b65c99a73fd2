"""Cleaning a CSV file with chkpt: files as inputs, and only what is downstream of a change recomputes.

The pipeline reads a sales file and a city -> region lookup file, drops rows that cannot be used, normalizes the
rest and aggregates a small report:

    file:sales.csv -> read_sales -> drop_bad_rows -> normalize --+
                      read_sales ---------------------------------+--> report
    file:regions.csv -> read_regions ------------------------------+

A file changes without chkpt knowing, so each file enters the graph through `chkpt.file(path)`, a source stage
whose key covers the file's content: a new content is a new key, and everything downstream of it has new keys
too. The pipeline is built once; the example runs it, edits the lookup file, reruns, edits the sales file and
reruns, and each rerun computes only the stages downstream of the file that changed.

Run it from anywhere: python examples/clean_csv.py (it writes its files under the system temp dir).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from typing import Any

import chkpt

Row = dict[str, Any]

SALES = """\
date,city,product,quantity,unit_price
2024-03-01,Berlin,Coffee,3,4.50
2024-03-01, hamburg ,coffee,2,4.50
2024-03-01,Munich,TEA,5,3.20
01/03/2024,Leipzig,Cake,1,2.80
2024-03-02,BERLIN,Tea,,3.20
2024-03-02,Cologne,Coffee,4,4.50
2024-03-02,Munich,Cake,2,n/a
2024-03-02,Hamburg,Tea,-1,3.20
02/03/2024,Berlin,cake,2,2.80
"""

REGIONS = """\
city,region
Berlin,East
Leipzig,East
Hamburg,North
Munich,South
"""


def read_csv(path: str) -> list[Row]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


@chkpt.Stage.wrap()
def read_sales(path: str) -> list[Row]:
    return read_csv(path)


@chkpt.Stage.wrap()
def read_regions(path: str) -> list[Row]:
    return read_csv(path)


@chkpt.Stage.wrap()
def drop_bad_rows(rows: list[Row]) -> list[Row]:
    """Keep rows with every field present, a positive whole quantity and a numeric price."""
    kept = []
    for row in rows:
        if not all((value or "").strip() for value in row.values()):
            continue
        try:
            quantity, price = int(row["quantity"]), float(row["unit_price"])
        except ValueError:
            continue
        if quantity > 0 and price >= 0:
            kept.append(row)
    return kept


@chkpt.Stage.wrap()
def normalize(rows: list[Row]) -> list[Row]:
    """ISO dates, 'Title' city names, lowercase products, numbers as numbers, and each row's revenue."""
    clean = []
    for row in rows:
        date = row["date"].strip()
        if "/" in date:  # day/month/year
            day, month, year = date.split("/")
            date = f"{year}-{month}-{day}"
        quantity, price = int(row["quantity"]), float(row["unit_price"])
        clean.append(
            {
                "date": date,
                "city": row["city"].strip().title(),
                "product": row["product"].strip().lower(),
                "quantity": quantity,
                "revenue": round(quantity * price, 2),
            }
        )
    return clean


@chkpt.Stage.wrap()
def report(raw: list[Row], rows: list[Row], regions: list[Row]) -> dict[str, Any]:
    region_of = {entry["city"]: entry["region"] for entry in regions}
    revenue: dict[str, float] = {}
    units: dict[str, int] = {}
    for row in rows:
        region = region_of.get(row["city"], "unknown")
        revenue[region] = round(revenue.get(region, 0.0) + row["revenue"], 2)
        units[row["product"]] = units.get(row["product"], 0) + row["quantity"]
    return {
        "rows read": len(raw),
        "rows dropped": len(raw) - len(rows),
        "revenue by region": dict(sorted(revenue.items())),
        "units by product": dict(sorted(units.items())),
        "days": sorted({row["date"] for row in rows}),
    }


def build(sales_path: str, regions_path: str) -> chkpt.Pipeline[dict[str, Any]]:
    """The pipeline. The files' contents are read into the keys when each run is planned, not here."""
    sales = (chkpt.file(sales_path),) >> read_sales
    regions = (chkpt.file(regions_path),) >> read_regions
    # read_sales appears twice but has the same key in both places, so it runs (or loads) once.
    return (sales, sales >> drop_bad_rows >> normalize, regions) >> report


def show(title: str, run: chkpt.Run[dict[str, Any]]) -> None:
    computed = [r.name for r in run.records if r.outcome != "loaded"]
    loaded = [r.name for r in run.records if r.outcome == "loaded"]
    print(f"== {title} ==")
    print(run)
    print(f"computed: {', '.join(computed) or '-'}")
    print(f"loaded:   {', '.join(loaded) or '-'}")
    for name, value in run.value.items():
        print(f"  {name}: {json.dumps(value)}")
    print()


def main() -> None:
    # A folder of its own under the system temp dir, emptied first so that the first run really computes.
    base = os.path.join(tempfile.gettempdir(), "chkpt-clean-csv")
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    sales_path, regions_path = os.path.join(base, "sales.csv"), os.path.join(base, "regions.csv")
    with open(sales_path, "w", encoding="utf-8") as file:
        file.write(SALES)
    with open(regions_path, "w", encoding="utf-8") as file:
        file.write(REGIONS)
    config = chkpt.Config(load=True, dir=os.path.join(base, "checkpoints"))
    pipeline = build(sales_path, regions_path)

    show("first run: computes every stage", pipeline.run(config))

    # The lookup file gains the missing city: only read_regions and report are computed. The cleaned rows are
    # loaded from normalize's checkpoint, so drop_bad_rows is not even needed.
    with open(regions_path, "a", encoding="utf-8") as file:
        file.write("Cologne,West\n")
    show("after adding Cologne to regions.csv", pipeline.run(config))

    # A new day of sales arrives: everything downstream of the sales file is computed, read_regions is loaded.
    with open(sales_path, "a", encoding="utf-8") as file:
        file.write("2024-03-03,Leipzig,Coffee,6,4.50\n2024-03-03,Berlin,Tea,two,3.20\n")
    show("after appending to sales.csv", pipeline.run(config))


if __name__ == "__main__":
    main()
