-- GET /livez: the server's floor (routing and the middleware stack, no I/O).
local common = require "common"
wrk.path = "/livez"
done = common.done
