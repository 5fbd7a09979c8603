"""Tools around the pipeline that work on user data directly: DICOM de-identification and its check, NIfTI header
scrubbing, DICOM series conversion and DICOM Segmentation output."""
