"""Results for people: a rich table on the console and a loss/accuracy plot."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table

__all__ = ["TrainProgress", "result_table", "events_table", "save_plot"]


class TrainProgress:
    """Rich progress bars for epochs and the batches of the current epoch."""

    def __init__(self, console: Console, label: str):
        self.console = console
        self.label = label
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                                 transient=False)

    def start(self, epochs: int, done: int, batches: int) -> None:
        self.progress.start()
        self.epochs = self.progress.add_task(f"{self.label} epochs", total=epochs,
                                             completed=done, info="")
        self.batches = self.progress.add_task("batches", total=batches, info="")

    def batch_done(self, info: str = "") -> None:
        self.progress.update(self.batches, advance=1, info=info)

    def epoch_done(self, row: dict) -> None:
        info = (f"loss {row['loss']:.4f}  train {row['train_accuracy']:.3f}  "
                f"test {row['test_accuracy']:.3f}")
        self.progress.update(self.epochs, advance=1, info=info)
        self.progress.reset(self.batches)

    def stop(self) -> None:
        self.progress.remove_task(self.batches)
        self.progress.stop()


def result_table(result: dict) -> Table:
    """The closing table: what ran, how well, how fast, and the digest."""
    t = Table(title=escape(f"fxbp train: {result['dataset']['name']}"), show_header=False)
    t.add_column("what", style="bold")
    t.add_column("value")
    rt = result["runtime"]
    t.add_row("backend", escape(f"{rt['backend']} ({rt['platform']}, {rt['device']})"))
    t.add_row("network", "-".join(str(s) for s in result["network"]["sizes"])
              + f" sigmoid, loss {result['network']['loss']}")
    if result["fixed_point"]:
        t.add_row("precision", escape(f"{result['precision']['name']}, rounding "
                                      f"{result['rounding']}, sigmoid "
                                      f"{result['network']['sigmoid']['kind']}"))
    lr = result["learning_rate"]
    t.add_row("schedule", f"{result['epochs']} epochs, batch {result['batch']}, lr {lr['lr']:g} "
                          f"(eta {lr['eta']:.6g} per sample)")
    t.add_row("final loss", f"{result['final_loss']:.5f}")
    t.add_row("train accuracy", f"{100 * result['final_train_accuracy']:.2f} %")
    t.add_row("test accuracy", f"{100 * result['final_test_accuracy']:.2f} %")
    sps = result["samples_per_second"]
    t.add_row("samples/s", f"{sps:,.0f}" if sps else "-")
    hw = result.get("hardware")
    if hw and hw.get("cycles_per_sample"):
        rate = hw.get("simulated_cycles_per_second")
        t.add_row("engine", f"{hw['lanes']} MAC lanes: {hw['cycles_per_sample']:,.1f} "
                  f"cycles/sample, lane utilisation {100 * hw['mac_lane_utilisation']:.1f} %"
                  + (f", {rate / 1e6:,.2f} M simulated cycles/s" if rate else ""))
        if hw.get("fpga_samples_per_second"):
            t.add_row("FPGA samples/s", escape(f"{hw['fpga_samples_per_second']:,.0f} at "
                                               f"{hw['clock_mhz']:g} MHz ({hw['clock_source']})"))
        else:
            t.add_row("FPGA samples/s", escape(f"- (clock {hw['clock_source']})"))
    link = (hw or {}).get("link")
    if link:
        bound = link["link_bound_samples_per_second"]
        t.add_row("link", escape(
            f"{link['baud']:,} baud{' (simulated)' if link['simulated'] else ''}: "
            f"{(link['bytes_out'] + link['bytes_in']) / 1e3:,.1f} kB in {link['frames']:,} "
            f"frames, {link['retries']} retries; link-bound "
            + (f"{bound:,.0f} samples/s" if bound else "-")))
    t.add_row("weights digest", result["weights_digest"])
    return t


def events_table(result: dict) -> Table | None:
    """Cast events per site, when the backend counts them."""
    ev = result["cast_events"]
    if not ev:
        return None
    by_layer = result.get("cast_events_by_layer")
    t = Table(title="cast events")
    cols = ["site", "values", "overflow", "underflow"]
    if by_layer:
        cols.append("underflow by layer (share of its values)")
    for col in cols:
        t.add_column(col, justify="left" if col[0] in "su" and col != "underflow" else "right")
    for name, c in ev.items():
        if c["total"]:
            row = [name, f"{c['total']:,}", f"{c['overflow']:,}", f"{c['underflow']:,}"]
            if by_layer:
                row.append("  ".join(
                    f"{l}: {sites[name]['underflow']:,} "
                    f"({sites[name]['underflow'] / sites[name]['total']:.2%})"
                    for l, sites in by_layer.items() if sites.get(name, {}).get("total"))
                           or "-")
            t.add_row(*row)
    return t


def save_plot(results: list[dict], path: Path) -> None:
    """Loss and test accuracy per epoch, one line per result."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for r in results:
        epochs = [h["epoch"] for h in r["history"]]
        label = r["backend"] if not r["fixed_point"] else (
            f"{r['backend']} {r['precision']['name']} {r['rounding']}")
        ax_loss.plot(epochs, [h["loss"] for h in r["history"]], label=label)
        ax_acc.plot(epochs, [100 * h["test_accuracy"] for h in r["history"]], label=label)
    ax_loss.set(xlabel="epoch", ylabel="training loss", yscale="log", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    name = results[0]["dataset"]["name"]
    fig.suptitle(f"fxbp: {name}, network {'-'.join(map(str, results[0]['network']['sizes']))}")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix.lower().lstrip(".") or "png"      # the file's own type: png, svg, pdf
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, dpi=110, format=fmt)
        tmp.replace(path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
