-- GET a random line of BENCH_PATHS (list pages: the first, or one behind a deep cursor).
local common = require "common"
local paths

function init(args)
  common.seed()
  paths = common.lines("BENCH_PATHS")
end

function request()
  return wrk.format("GET", common.pick(paths))
end

done = common.done
