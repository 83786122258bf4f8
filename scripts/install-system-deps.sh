#!/usr/bin/env bash
# Debian packages the tests and the corpus builder need: FluidSynth and General MIDI soundfonts (FluidR3 for
# the dry corpus; MuseScore General, TimGM6mb and the OPL-3 bank too for randomised recording conditions).
# Installs only what is missing (apt-get needs root, as on the project's machines).
set -euo pipefail
missing=()
command -v fluidsynth >/dev/null 2>&1 || missing+=(fluidsynth)
[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || missing+=(fluid-soundfont-gm)
[ -f /usr/share/sounds/sf3/MuseScore_General.sf3 ] || missing+=(musescore-general-soundfont)
[ -f /usr/share/sounds/sf2/TimGM6mb.sf2 ] || missing+=(timgm6mb-soundfont)
[ -f /usr/share/sounds/sf2/OPL-3_FM_128M.sf2 ] || missing+=(opl3-soundfont)
# recorded music for benchmarks/real_recordings.py; its test needs one package (asc-music, 10 MB); the full
# benchmark also reads ufoai-music, planetblupi-music-ogg and frozen-bubble-data where installed
[ -f /usr/share/games/asc/music/frontiers.mp3 ] || missing+=(asc-music)
# speech synthesisers for the spoken-digit corpus (midlevel corpus speech): espeak-ng's accents and variants,
# flite's voices and three festival voices
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v flite >/dev/null 2>&1 || missing+=(flite)
command -v festival >/dev/null 2>&1 || missing+=(festival)
[ -d /usr/share/festival/voices/english/kal_diphone ] || missing+=(festvox-kallpc16k)
[ -d /usr/share/festival/voices/english/ked_diphone ] || missing+=(festvox-kdlpc16k)
[ -d /usr/share/festival/voices/us/cmu_us_slt_arctic_hts ] || missing+=(festvox-us-slt-hts)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
