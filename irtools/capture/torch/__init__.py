"""The torch frontend: ``torch.export`` programs and FX graphs -> the IR."""
