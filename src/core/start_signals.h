// Whether SIGHUP was ignored when this process started (nohup, or a parent that ignores hang-ups),
// recorded before any shared library's constructor could change it. Note [Ignored at start].
#pragma once

namespace mc {

bool hup_ignored_at_start();

}  // namespace mc
