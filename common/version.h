/*
 * version.h — the one version string of Tally (both processes, buildinfo,
 * /metrics). Raised by hand with a release.
 */
#ifndef TALLY_VERSION_H
#define TALLY_VERSION_H

#define TALLY_VERSION "0.9.0"

#endif
