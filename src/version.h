/* version: the release this tree builds. */
#ifndef LEGATE_VERSION_H
#define LEGATE_VERSION_H

#define LEGATE_VERSION "0.1.0"

#endif
