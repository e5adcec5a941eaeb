"""Draws `make bench` table 11 (the tab-separated figures it writes) as one PNG: stream throughput by payload
size for each way of reading beside Erlang `!`, and the round trips beside their Erlang
references."""

import csv
import sys

import matplotlib.pyplot as plt


def main(csv_path: str, png_path: str) -> None:
    sizes, ways = [], {"for msg in ch": [], "receive_many": [], "memoryview": [], "Erlang !": []}
    trips = []
    with open(csv_path, newline="") as figures:
        for row in csv.reader(figures, delimiter="\t"):
            if row[0] == "stream":
                sizes.append(row[1])
                for way, value in zip(ways, row[2:6]):
                    ways[way].append(float(value))
            else:
                trips.append((row[1], float(row[2])))
    figure, (streams, round_trips) = plt.subplots(1, 2, figsize=(12, 4.5))
    for way, rates in ways.items():
        style = "--" if way == "Erlang !" else "-"
        streams.plot(sizes, rates, style, marker="o", label=way)
    streams.set_yscale("log")
    streams.set_xlabel("payload")
    streams.set_ylabel("thousand messages/s (log)")
    streams.set_title("Erlang process -> Python, one message at a time")
    streams.legend()
    streams.grid(True, which="both", alpha=0.3)
    labels = [label for label, _ in trips]
    values = [us for _, us in trips]
    colors = ["tab:gray" if "reference" in label else "tab:blue" for label in labels]
    round_trips.barh(labels, values, color=colors)
    round_trips.invert_yaxis()
    round_trips.set_xlabel("median round trip, us (gray: Erlang references)")
    round_trips.set_title("Round trips")
    for y, us in enumerate(values):
        round_trips.text(us, y, f" {us:.1f}", va="center")
    figure.suptitle("py_channel, make bench (2-core machine, one run)")
    figure.tight_layout()
    figure.savefig(png_path, dpi=100)
    print(f"plot: {png_path}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
