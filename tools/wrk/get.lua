-- GET random targets from a list: wrk -s get.lua URL -- IDS_FILE PATH_PREFIX
-- PATH_PREFIX is "/sha256/" for blocks or "/sha256/like/" for LIKE queries.
-- Every thread picks uniformly at random from the whole list.
--
-- init only reads the ids: wrk starts each thread as soon as its own init is done,
-- before the next thread's init and before its clock starts, so a slow init would let
-- the first thread send uncounted-for-time requests. A request is built by joining
-- a fixed head, the id and a fixed tail, which costs wrk almost nothing.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

local ids = {}
local head, tail

function init(args)
   local ids_file, prefix = args[1], args[2] or "/sha256/"
   assert(ids_file, "usage: get.lua -- IDS_FILE [PATH_PREFIX]")
   seed_random()
   ids = read_lines(ids_file)
   assert(#ids > 0, "no ids in " .. ids_file)
   local placeholder = "@ID@"
   local sample = wrk.format("GET", prefix .. placeholder)
   local at = assert(sample:find(placeholder, 1, true))
   head, tail = sample:sub(1, at - 1), sample:sub(at + #placeholder)
end

function request()
   return head .. ids[math.random(#ids)] .. tail
end
