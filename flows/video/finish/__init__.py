"""Production finishing: templates, brand kit, music ducked under the speech, loudness,
burned-in captions, chapters and a poster frame (`finish_video`), on the stitched video."""
