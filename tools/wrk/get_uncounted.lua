-- get.lua without a response() callback: wrk -s get_uncounted.lua URL -- IDS_FILE PREFIX
-- With response() defined, wrk buffers every body and hands it to Lua as a string;
-- for 1 MiB answers that costs wrk more CPU than the servers use, so throughput is
-- also measured without it. Statuses are then not counted per code; wrk's own count
-- of answers with status >= 400 stands in for non-2xx.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "get.lua")
response = nil
