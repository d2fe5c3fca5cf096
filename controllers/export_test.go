package controllers

// FeedTicketsRemembered is how many Secrets' expiries f holds.
var FeedTicketsRemembered = (*FeedTickets).remembered
