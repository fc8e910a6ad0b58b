"""The `merged-vlm` command line."""
import typer

app = typer.Typer()


def main() -> None:
    app()
