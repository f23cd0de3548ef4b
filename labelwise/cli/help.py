"""Help strings shared by several commands."""
DATA_HELP = "A folder (class subfolders; labels.csv + images/; annotations/ + images/) or a CSV file."
FORMAT_HELP = "Data format: auto, folder, csv-tags, csv-onehot, annotations."
DELIMITER_HELP = "Separator between tags in a csv-tags cell; auto = whitespace, commas, semicolons or |."
ENGINE_HELP = "torch (PyTorch) or onnx (onnxruntime; exports RUN/model.onnx once, kept in step with the weights)."
TTA_HELP = ("Test-time augmentation: average each image with its flips the model trained with (mirror; "
            "upside-down too for --vflip runs).")
TTA_VIEWS_HELP = ("Test-time augmentation with N views (implies --tta): the flips, then each flip shifted by 1/16 of "
                  "the side (1 = off, 2 = image + mirror, up to 10; 20 with --vflip).")


def tta_option(tta: bool, tta_views: int | None) -> bool | int:
    """--tta / --tta-views N -> the ``tta`` argument of Predictor.load (False, True or a count)."""
    return tta_views if tta_views is not None else tta
